"""The benchmark's harness still runs against the handler, and its call counts hold.

bench/run.py is a script (``make bench``), not a test; this keeps it from rotting silently
when the handler changes, and pins the count the issue targets: an Update that reuses the
bundle makes exactly one SSM read and no write.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
sys.path.insert(0, "bench")
import run
with run.mock_aws():
    h = run.Harness()
    _, calls = run.ssm_calls(h)
    series = run._reuse_series(h, 2, "ECDSA-P256")
print(json.dumps({"calls": calls, "series": sorted(series)}))
"""


def test_bench_harness_counts_one_read_and_no_write_for_a_reuse() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    calls = result["calls"]
    assert calls["Update, reuse"]["calls"] == {"GetParameters": 1}
    assert calls["Update, reuse"]["writes"] == 0
    assert calls["Create, empty store"]["calls"]["PutParameter"] == 6
    assert calls["Delete"]["calls"] == {"DeleteParameters": 1}
    assert "handler compute (total - SSM)" in result["series"]
