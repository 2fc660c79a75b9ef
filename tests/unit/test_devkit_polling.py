"""The dev kit's poller: the condition's value when it holds, None or a failure when the time is up."""

from __future__ import annotations

import itertools

import pytest

from devkit.polling import eventually, poll


def test_the_first_truthy_value_is_returned() -> None:
    answers = iter([0, None, "", 7, 8])
    assert poll(lambda: next(answers), timeout=5, interval=0) == 7


def test_a_condition_that_never_holds_gives_none_or_fails() -> None:
    assert poll(lambda: 0, timeout=0.05, interval=0.01) is None
    with pytest.raises(AssertionError, match=r"timed out after 0\.05s waiting for the answer"):
        eventually(lambda: 0, timeout=0.05, interval=0.01, what="the answer")


def test_only_the_exceptions_named_count_as_not_yet() -> None:
    calls = itertools.count()

    def starting() -> int:
        if next(calls) < 3:
            raise ConnectionError("not listening yet")
        return 1

    assert eventually(starting, timeout=5, interval=0, ignoring=(ConnectionError,)) == 1
    with pytest.raises(ZeroDivisionError):
        poll(lambda: 1 / 0, timeout=5, ignoring=(ConnectionError,))
