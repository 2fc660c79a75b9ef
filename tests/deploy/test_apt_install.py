"""deploy/local/apt-install.sh waits for a dpkg lock someone else holds instead of failing on it.

Two installs at once (tiers of one CI run, an operator's apt) used to end one of them with "Could not get lock
/var/lib/dpkg/lock-frontend". The test holds dpkg's frontend lock the way apt does (an fcntl lock) while the
script reinstalls nothing (a package that is already installed), and checks that it waits, then succeeds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

import pytest

from devkit.polling import eventually

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local" / "apt-install.sh"
DPKG_FRONTEND_LOCK = Path("/var/lib/dpkg/lock-frontend")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("apt-get") is None or not DPKG_FRONTEND_LOCK.exists(),
    reason="needs root on Debian (apt-get and dpkg's lock)",
)


def _take(lock_file: IO[str]) -> bool:
    try:
        fcntl.lockf(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def test_install_waits_for_a_held_dpkg_lock_then_succeeds() -> None:
    with DPKG_FRONTEND_LOCK.open("w") as lock:
        # Another install on the machine (a tier installing a browser, an operator's apt) may hold the lock
        # now: wait for it as apt-install.sh would, rather than fail.
        eventually(lambda: _take(lock), timeout=900, interval=0.5, what="dpkg's frontend lock")
        install = subprocess.Popen(
            ["bash", str(SCRIPT), "bash"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        time.sleep(3)
        still_waiting = install.poll() is None
        fcntl.lockf(lock, fcntl.LOCK_UN)
    output, _ = install.communicate(timeout=120)
    assert still_waiting, f"apt-install.sh did not wait for the lock: rc={install.returncode} {output}"
    assert install.returncode == 0, output


def test_refuses_without_packages() -> None:
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "usage" in result.stderr
