"""Which of the project's modules a unit of work runs: the files a deposit's code path goes through.

A process started with CODE_PATH_OUTPUT in its environment is run under this module (`ServiceProcess` does
it: `python -m devkit.code_path <its usual command>`), which records, for every module under `services/`,
when each of its functions ran beneath a root: a function named in CODE_PATH_ROOTS (`module:Qualname`,
comma-separated) that is a process's unit of work (a request, a drain, a batch). What a process does besides
(starting up, its periodic housekeeping, the replication fallback's scans) runs beneath no root and is not
recorded. Each process writes what it saw to CODE_PATH_OUTPUT/<pid>.json a few times a second, so nothing
depends on how it exits; `functions_run` and `modules_run` read them back for a window of time. Code that an
import runs (a module body, its class bodies) is no unit of work's and is not recorded either.

The recording is a profile function (`sys.setprofile`, `threading.setprofile`), so it sees every call
without changing the code it watches; it slows the processes down, which only a test that counts pays.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

OUTPUT_VARIABLE = "CODE_PATH_OUTPUT"
ROOTS_VARIABLE = "CODE_PATH_ROOTS"
SERVICES = Path(__file__).resolve().parents[1] / "services"
_TICKS_PER_SECOND = 20  # the resolution of "when": a module ran in some 50 ms tick
_FLUSH_SECONDS = 0.2


def traced(argv: Sequence[str]) -> list[str]:
    """`argv` (a Python program, a console script or `python -m ...`) run under the recorder."""
    program = list(argv[1:]) if Path(argv[0]).name.startswith("python") else list(argv)
    return [sys.executable, "-m", "devkit.code_path", *program]


def functions_run(output: Path, start: float, end: float) -> set[str]:
    """The functions (`module path under services/:qualified name`) that ran beneath a root between `start`
    and `end` (time.time()), in every process that wrote to `output`."""
    first, last = int(start * _TICKS_PER_SECOND), int(end * _TICKS_PER_SECOND)
    functions: set[str] = set()
    for record in output.glob("*.json"):
        ticks_by_function: dict[str, list[int]] = json.loads(record.read_text())
        functions |= {
            name for name, ticks in ticks_by_function.items() if any(first <= t <= last for t in ticks)
        }
    return functions


def modules_run(output: Path, start: float, end: float) -> set[str]:
    """The modules (paths under services/) of `functions_run`."""
    return {function.partition(":")[0] for function in functions_run(output, start, end)}


class _Recorder:
    def __init__(self, output: Path, roots: Sequence[str]) -> None:
        self.output = output
        # A root's code is known by its qualified name and the end of its file name (`a.b:C.f` -> a/b.py).
        self.roots = {
            (qualname, module.replace(".", "/")) for module, _, qualname in (r.partition(":") for r in roots)
        }
        self.ticks: dict[str, set[int]] = {}
        self._is_root: dict[CodeType, bool] = {}
        self._function_of: dict[CodeType, str | None] = {}
        self._depth: dict[int, int] = {}  # thread id -> how many root calls it is inside
        self._importing: dict[int, int] = {}  # thread id -> how many imports it is inside
        self._lock = threading.Lock()

    def profile(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event not in ("call", "return"):
            return
        code = frame.f_code
        root = self._is_root.get(code)
        if root is None:
            stem = code.co_filename.removesuffix(".py").removesuffix("/__init__")
            root = self._is_root[code] = any(
                code.co_qualname == name and stem.endswith(module) for name, module in self.roots
            )
        thread = threading.get_ident()
        step = 1 if event == "call" else -1
        if root:
            self._depth[thread] = self._depth.get(thread, 0) + step
        elif code.co_name == "<module>" and frame.f_globals.get("__name__") != "__main__":
            # An import: what it runs is no unit of work's. (The program itself runs as __main__.)
            self._importing[thread] = self._importing.get(thread, 0) + step
        if event != "call" or self._depth.get(thread, 0) <= 0 or self._importing.get(thread, 0) > 0:
            return
        function = self._function_of.get(code, "")
        if function == "":
            path = Path(code.co_filename)
            function = self._function_of[code] = (
                f"{path.relative_to(SERVICES)}:{code.co_qualname}" if path.is_relative_to(SERVICES) else None
            )
        if function is not None:
            with self._lock:
                self.ticks.setdefault(function, set()).add(int(time.time() * _TICKS_PER_SECOND))

    def flush_forever(self) -> None:
        written: dict[str, int] = {}
        while True:
            time.sleep(_FLUSH_SECONDS)
            with self._lock:
                counts = {name: len(ticks) for name, ticks in self.ticks.items()}
                snapshot = {name: sorted(ticks) for name, ticks in self.ticks.items()}
            if counts != written:
                record = self.output / f"{os.getpid()}.json"
                partial = record.with_suffix(".partial")
                partial.write_text(json.dumps(snapshot))
                partial.replace(record)
                written = counts

    def start(self) -> None:
        threading.Thread(target=self.flush_forever, name="code-path", daemon=True).start()


def _main(argv: list[str]) -> None:
    output = Path(os.environ[OUTPUT_VARIABLE])
    output.mkdir(parents=True, exist_ok=True)
    recorder = _Recorder(output, [r for r in os.environ.get(ROOTS_VARIABLE, "").split(",") if r])
    recorder.start()
    # gunicorn forks its workers: a child starts with its parent's (empty) record and needs its own writer.
    os.register_at_fork(after_in_child=recorder.start)
    threading.setprofile(recorder.profile)
    sys.setprofile(recorder.profile)
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    _main(sys.argv[1:])
