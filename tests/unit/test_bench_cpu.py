"""The benchmark's CPU meter puts a process's time in its group: a system process by the pid it was started
with (its children too), anything this process started otherwise in the load."""

from __future__ import annotations

import subprocess
import sys

from bench.cpu import CpuMeter, Roles

# Burns `CPU` seconds of processor time, then stays alive long enough for the meter's next sample.
BURN = "import time\nwhile time.process_time() < {cpu}: pass\ntime.sleep(1.0)"
CPU = 0.3


def _burner() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BURN.format(cpu=CPU)])


def test_time_is_counted_in_the_group_of_the_process_that_spent_it() -> None:
    system: dict[str, int] = {}
    meter = CpuMeter(Roles(system=lambda: system, postmasters={}, walsender=None, apply_worker=None))
    meter.start()
    relay = _burner()
    system["relay"] = relay.pid
    # A child of the relay's process (as gunicorn's workers are of its master) counts as the relay.
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN.format(cpu=CPU)!r}])",
        ]
    )
    system["write-service"] = worker.pid
    load = _burner()
    for process in (relay, worker, load):
        assert process.wait(timeout=60) == 0
    shares = meter.stop()

    seconds = {group: share * meter.wall for group, share in shares.items()}
    assert seconds["relay"] >= CPU * 0.9
    assert seconds["write-service"] >= CPU * 0.9  # its child's time
    assert seconds["load (benchmark, producers, wrk)"] >= CPU * 0.9
