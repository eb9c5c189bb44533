"""The trial-scaling benchmark's memory figure: a forked loader worker adds its private pages only,
not the pages it shares with the training process (which summed RSS would count twice)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from experiments.bench.trial_scaling import _private_kb, _process_tree, _rss_kb

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="reads Linux /proc")

MB = 1024  # kB
# a parent holding 200 MB it has written, and a forked child that writes 50 MB of its own
SCRIPT = """
import os, sys, time
held = bytearray(200 * 2**20); held[::4096] = b"x" * len(held[::4096])
if os.fork() == 0:
    own = bytearray(50 * 2**20); own[::4096] = b"y" * len(own[::4096])
    print("ready", flush=True)
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""


def test_a_forked_worker_counts_only_its_private_pages():
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        parent, *workers = _process_tree(proc.pid)
        assert parent == proc.pid and len(workers) == 1
        assert _rss_kb(parent) > 200 * MB
        assert _rss_kb(workers[0]) > 200 * MB  # the inherited buffer is in the worker's RSS too ...
        assert 50 * MB <= _private_kb(workers[0]) < 80 * MB  # ... but only its own 50 MB are private to it
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
    assert _rss_kb(proc.pid) == _private_kb(proc.pid) == 0  # an exited process reads as 0, not as an error
