"""The worker's descendants: found through /proc, killed with the worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pyvisor_worker import reaper

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] != b"Z"


@linux
def test_descendants_include_grandchildren_in_other_sessions() -> None:
    child = subprocess.Popen(
        ["sh", "-c", "setsid sleep 30 & echo $!; wait"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        found = reaper.descendants(os.getpid())
        assert child.pid in found
        assert grandchild in found
    finally:
        os.kill(grandchild, 9)
        child.wait(5)


@linux
def test_kill_descendants_kills_them_all() -> None:
    # In a process of its own: here it would kill whatever else the test runner started.
    script = (
        "import subprocess\n"
        "from pyvisor_worker import reaper\n"
        "child = subprocess.Popen(['sleep', '30'], start_new_session=True)\n"
        "print(child.pid, reaper.kill_descendants(), flush=True)\n"
        "child.wait(5)\n"
        "print(child.returncode, flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=20, check=True).stdout.split()
    pid, killed, returncode = int(out[0]), int(out[1]), int(out[2])
    assert killed == 1
    assert returncode == -9
    assert not _alive(pid)


@linux
def test_a_subreaper_adopts_orphans_in_a_process_of_its_own() -> None:
    script = (
        "import subprocess, sys, time\n"
        "from pyvisor_worker import reaper\n"
        "assert reaper.become_subreaper()\n"
        "out = subprocess.run(['sh', '-c', 'sleep 30 >/dev/null 2>&1 & echo $!'], capture_output=True,"
        " text=True).stdout\n"
        "print(out.strip(), flush=True)\n"
        "time.sleep(0.2)\n"
        "print(reaper.kill_descendants(), flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=20, check=True).stdout.split()
    orphan, killed = int(out[0]), int(out[1])
    assert killed >= 1, "the orphan was adopted, so it was a descendant"
    deadline = time.monotonic() + 5
    while _alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(orphan)
