"""One poller: a condition asked again and again until it holds or the time is up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def poll(
    condition: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """Asks `condition()` every `interval` seconds until it returns something truthy, and returns that; None
    once `timeout` seconds have passed. Exceptions of the `ignoring` types count as "not yet" (a server that
    does not answer while it starts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except ignoring:
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def eventually(
    condition: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    what: str = "",
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """As `poll`, but a condition that never holds fails: AssertionError, which fails the test that waits."""
    result = poll(condition, timeout, interval, ignoring)
    if not result:
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what or condition}")
    return result
