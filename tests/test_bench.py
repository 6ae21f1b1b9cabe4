"""The benchmark's harness still runs against the handler, and its call counts hold.

bench/ is a script (``make bench``: bench/run.py drives one module per measure), not a test;
this keeps its harness from rotting silently when the handler changes, and pins the count the
issue targets: an Update that reuses the bundle makes exactly one SSM read and no write.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Runs the benchmark harness in fresh interpreters: the full run only.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
sys.path.insert(0, "bench")
import calls, harness, latency
with harness.mock_aws():
    h = harness.Harness()
    _, counted = calls.ssm_calls(h)
    series = latency.reuse_series(h, 2, "ECDSA-P256")
print(json.dumps({"calls": counted, "series": sorted(series)}))
"""


def _probe(code: str) -> dict[str, Any]:
    """Run ``code`` beside bench/'s modules in a fresh interpreter (importing bench/harness.py
    sets up fake AWS and logging for the whole process) and return the JSON it printed last."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_bench_harness_counts_one_read_and_no_write_for_a_reuse() -> None:
    result = _probe(PROBE)
    calls = result["calls"]
    assert calls["Update, reuse"]["calls"] == {"GetParameters": 1}
    assert calls["Update, reuse"]["writes"] == 0
    # The owner record, then the six parameters of the bundle.
    assert calls["Create, empty store"]["calls"]["PutParameter"] == 7
    # Who owns it (one read), the bundle, then the owner record last.
    assert calls["Delete"]["calls"] == {"GetParameters": 1, "DeleteParameters": 2}
    assert "handler compute (total - SSM)" in result["series"]


VERDICT_PROBE = """
import json, sys
sys.path.insert(0, "bench")
import targets

def one(compute_ms, ratio, cold_ms, reads=1):
    return {
        "calls": {"Update, reuse": {"reads": reads, "writes": 0}},
        "reuse": {"handler compute (total - SSM)": compute_ms / 1000},
        "create": {"openssl_ratio": ratio},
        "cold": {"overhead": cold_ms / 1000, "clients": 0},
        "memory": {"RSA-4096 no moto": 60.0},
    }

steady = targets.targets([one(1.2, 4.8, 12), one(1.3, 5.1, 13), one(1.4, 4.6, 11)])
flipping = targets.targets([one(1.2, 4.8, 12), one(1.3, 3.9, 13), one(1.4, 5.4, 21)])
below = targets.targets([one(1.2, 4.8, 12), one(1.3, 4.9, -51), one(1.4, 5.4, 11)])
print(json.dumps({"steady": steady, "flipping": flipping, "below": below}))
"""


def test_a_target_is_judged_on_its_worst_run_and_the_sentence_agrees() -> None:
    """A verdict that one lucky run could flip is no verdict: the ratio is judged on its
    lowest run, the costs on their highest, and the summary sentence says the same."""
    result = _probe(VERDICT_PROBE)
    steady, flipping = result["steady"], result["flipping"]
    assert steady.startswith("**All 8 targets are met** on the conservative figure of 3 runs.")
    assert "**no**" not in steady
    assert flipping.startswith("**6 of 8 targets are met**")
    assert "OpenSSL recipe / our Create, RSA-2048 (medians of the run) (3.9x, wanted ≥ 4)" in (
        flipping
    )
    assert "cold-start overhead over bare boto3 + x509 (21ms, wanted ≤ 20)" in flipping
    # A cold start cheaper than the floor measured less than a first request pays: not met.
    assert result["below"].startswith("**7 of 8 targets are met**")
    assert "cold-start overhead is not below the floor (-51ms, wanted ≥ 0)" in result["below"]
    ratio_row = next(line for line in flipping.splitlines() if line.startswith("| OpenSSL"))
    assert "| 3 | 3.9x | 4.8x | 5.4x | min: 3.9x | **no** |" in ratio_row
