"""The per-endpoint slot limit holds across separate processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.osm.conftest import ROOT

HOLDER = """
import sys, time
from pipeline.osm.slots import EndpointSlots
slots = EndpointSlots(sys.argv[1], limit=2, poll_s=0.01)
with slots.hold("http://fixture/api"):
    start = time.time()
    time.sleep(0.3)
    end = time.time()
print(start, end)
"""


def test_slot_limit_holds_across_processes(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(5)
    ]
    spans = []
    for p in procs:
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0
        start, end = (float(v) for v in out.split())
        spans.append((start, end))
    # At any moment at most 2 holders: check every start against the spans running then.
    for start, _ in spans:
        running = sum(1 for s, e in spans if s <= start < e)
        assert running <= 2
    total = max(e for _, e in spans) - min(s for s, _ in spans)
    assert total >= 0.85  # 5 holders of 0.3 s through 2 slots need at least 3 rounds
