"""bench/http_bench.py counts a server's CPU over its whole process tree: a supervisor and the
workers it starts (``gateway serve --workers 2``, ``gunicorn -w 2``), not the supervisor alone."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.http_bench import _cpu_seconds, process_tree

#: A parent that starts two children: one idle, one burning CPU until killed.
_FAMILY = """
import subprocess, sys, time
idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
print(idle.pid, busy.pid, flush=True)
time.sleep(60)
"""


def test_the_tree_holds_the_parent_first_then_its_children_and_their_cpu_counts() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _FAMILY], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            idle, busy = (int(pid) for pid in parent.stdout.readline().split())
            tree = process_tree(parent.pid)
            assert tree[0] == parent.pid
            assert sorted(tree[1:]) == sorted([idle, busy])
            # The parent only sleeps (its own CPU is its start-up, a few hundredths of a
            # second): once the busy child has burnt more than that, the tree's total shows it.
            deadline = time.monotonic() + 30
            while (burnt := _cpu_seconds(busy)) < 0.3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert burnt >= 0.3
            assert _cpu_seconds(parent.pid) >= burnt
        finally:
            for pid in process_tree(parent.pid)[::-1]:
                subprocess.run(["kill", str(pid)], check=False)
