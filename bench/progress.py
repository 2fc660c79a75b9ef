"""The progress bar (stderr) and the machine's load average while each step runs.

At a terminal one line is redrawn four times a second: overall share of the planned time, elapsed time,
the step and what it is doing. Elsewhere (CI, a pipe) a line is printed when a step starts and every ten
seconds. The load average is sampled every second: the machine may be shared, and the results say so.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

BAR_WIDTH = 28
REDRAW_SECONDS = 0.25
PLAIN_EVERY_SECONDS = 10.0


class Progress:
    def __init__(self, plan: Sequence[tuple[str, float]], stream: TextIO = sys.stderr) -> None:
        """`plan`: every step's name and its expected seconds (the bar's weights)."""
        self._weights = dict(plan)
        self._total = sum(self._weights.values()) or 1.0
        self._done = 0.0
        self._step = ""
        self._fraction = 0.0
        self._detail = ""
        self._loads: dict[str, list[float]] = {}
        self._durations: dict[str, float] = {}
        self._stream = stream
        self._tty = stream.isatty()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-progress")

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._tty:
            self._stream.write("\r\033[K")
        self._stream.flush()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        with self._lock:
            self._step, self._fraction, self._detail = name, 0.0, ""
            self._loads[name] = [os.getloadavg()[0]]
        if not self._tty:
            self._print_line()
        began = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._durations[name] = time.monotonic() - began
                self._done += self._weights.get(name, 0.0)
                self._step, self._fraction, self._detail = "", 0.0, ""
                self._loads[name].append(os.getloadavg()[0])

    def update(self, fraction: float, detail: str = "") -> None:
        with self._lock:
            self._fraction = min(max(fraction, 0.0), 1.0)
            self._detail = detail

    def note(self, text: str) -> None:
        """A line that stays above the bar (a warning, a finished result)."""
        with self._lock:
            prefix = "\r\033[K" if self._tty else ""
            self._stream.write(f"{prefix}{text}\n")
            self._stream.flush()

    def load(self, name: str) -> dict[str, float]:
        """The 1-minute load average while step `name` ran (at its start, at its end, the highest) and how
        long the step took."""
        samples = self._loads.get(name) or [os.getloadavg()[0]]
        return {
            "start": samples[0],
            "end": samples[-1],
            "max": max(samples),
            "seconds": self._durations.get(name, 0.0),
        }

    def _run(self) -> None:
        last_plain = time.monotonic()
        last_sample = 0.0
        while not self._stop.wait(REDRAW_SECONDS):
            now = time.monotonic()
            if now - last_sample >= 1.0:
                last_sample = now
                with self._lock:
                    if self._step:
                        self._loads[self._step].append(os.getloadavg()[0])
            if self._tty:
                self._draw()
            elif now - last_plain >= PLAIN_EVERY_SECONDS:
                last_plain = now
                self._print_line()

    def _status(self) -> str:
        with self._lock:
            share = (self._done + self._weights.get(self._step, 0.0) * self._fraction) / self._total
            step, detail = self._step, self._detail
        share = min(share, 1.0)
        filled = round(BAR_WIDTH * share)
        elapsed = int(time.monotonic() - self._started)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        text = f"[{bar}] {share:4.0%} {elapsed // 60}:{elapsed % 60:02d} {step}"
        return f"{text}: {detail}" if detail else text

    def _draw(self) -> None:
        self._stream.write("\r\033[K" + self._status()[:150])
        self._stream.flush()

    def _print_line(self) -> None:
        self._stream.write(self._status() + "\n")
        self._stream.flush()
