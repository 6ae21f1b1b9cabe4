"""Cold start: what importing the handler adds to a fresh interpreter, as Lambda pays it.

A Lambda's first request waits for ``import handler.app``. Measured in fresh interpreters, run
interleaved round by round so that every variant shares the machine's noise, against the floor
the handler cannot go below (``import boto3, cryptography.x509``): with bytecode cached, with
handler/ compiled at import, and with handler/ and the libraries the artifact bundles all
compiled at import. The overhead is the median of per-round differences from the floor.
``-X importtime`` names our modules that cost most, and the boto3 clients made at import are
counted (the handler promises none).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness import subprocess_env
from report import ROOT, median, ms, table

# Each snippet prints the seconds its imports took, measured inside a fresh interpreter.
_IMPORT_SNIPPETS = {
    "bare": "import boto3, cryptography.x509",
    "app": "import handler.app",
    "app_after": "import boto3, cryptography.x509\n_m = time.perf_counter()\nimport handler.app",
}
_IMPORT_WRAPPER = """
import time
_t = time.perf_counter()
_m = _t
{code}
_e = time.perf_counter()
import json, sys
import botocore.client
print(json.dumps({{"total": _e - _t, "own": _e - _m, "modules": len(sys.modules)}}))
"""

_COUNT_CLIENTS = """
import botocore.client, json
made = []
original = botocore.client.ClientCreator.create_client
def counting(self, service_name, *a, **k):
    made.append(service_name)
    return original(self, service_name, *a, **k)
botocore.client.ClientCreator.create_client = counting
import handler.app
print(json.dumps({"clients": made, "store_client": handler.app.store._client is not None}))
"""


def _python(code: str, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", code],
        cwd=env["PYTHONPATH"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def _artifact_layout(target: Path) -> None:
    """handler/ and the libraries the artifact bundles, copied from this environment, no .pyc."""
    import cffi  # type: ignore[import-untyped]
    import cryptography
    import pycparser  # type: ignore[import-untyped]

    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "handler", target / "handler", ignore=skip)
    for module in (cffi, cryptography, pycparser):
        source = Path(module.__file__ or "").parent
        shutil.copytree(source, target / source.name, ignore=skip)
    for backend in Path(cffi.__file__ or "").parent.parent.glob("_cffi_backend*"):
        shutil.copy2(backend, target / backend.name)


def cold_start(runs: int) -> tuple[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-pyc-") as tmp:
        cached = subprocess_env(Path(tmp, "cached"), write_bytecode=True)
        # handler/ alone without .pyc, then everything the artifact bundles without .pyc, as
        # scripts/build_artifact.sh ships it: compiled at every cold start, since Lambda's
        # /var/task is read-only (boto3 keeps its bytecode, as in the runtime).
        shutil.copytree(
            ROOT / "handler", Path(tmp, "src", "handler"), ignore=shutil.ignore_patterns("*.pyc")
        )
        source_only = subprocess_env(None, write_bytecode=False, path=Path(tmp, "src"))
        _artifact_layout(Path(tmp, "artifact"))
        artifact_like = subprocess_env(None, write_bytecode=False, path=Path(tmp, "artifact"))
        variants = {
            "bare `import boto3, cryptography.x509`": ("bare", cached),
            "`import handler.app` (bytecode cached)": ("app", cached),
            "`import handler.app`, handler/ without .pyc": ("app", source_only),
            "`import handler.app`, handler/ + bundled libraries without .pyc (the artifact)": (
                "app",
                artifact_like,
            ),
            "handler.app imported after boto3 + x509 (our modules alone)": ("app_after", cached),
        }
        for _ in range(2):  # write the bytecode caches, warm the page cache
            for snippet, env in variants.values():
                _python(_IMPORT_WRAPPER.format(code=_IMPORT_SNIPPETS[snippet]), env)
        samples: defaultdict[str, list[dict[str, float]]] = defaultdict(list)
        for _ in range(runs):  # interleaved
            for label, (snippet, env) in variants.items():
                started = time.perf_counter()
                out = _python(_IMPORT_WRAPPER.format(code=_IMPORT_SNIPPETS[snippet]), env)
                sample = json.loads(out.stdout)
                sample["wall"] = time.perf_counter() - started
                samples[label].append(sample)
        clients = json.loads(_python(_COUNT_CLIENTS, cached).stdout)
        importtimes = [
            _python(
                "import boto3, cryptography.x509; import handler.app", cached, "-X", "importtime"
            ).stderr
            for _ in range(5)
        ]
    labels = list(variants)
    bare_runs = [s["total"] for s in samples[labels[0]]]

    def paired(label: str) -> float:
        # Median of per-round differences: each round ran every variant back to back.
        return median([s["total"] - b for s, b in zip(samples[label], bare_runs, strict=True)])

    rows = []
    for label in labels:
        totals = [s["total"] for s in samples[label]]
        walls = [s["wall"] for s in samples[label]]
        own = [s["own"] for s in samples[label]] if label == labels[-1] else None
        rows.append(
            [
                label,
                len(totals),
                ms(median(totals)),
                ms(median(walls)),
                f"{paired(label) * 1000:+.1f}" if label != labels[0] else "-",
                ms(median(own)) if own else "",
            ]
        )
    text = table(
        [
            "cold start",
            "n",
            "import median ms",
            "process wall median ms",
            "vs bare ms (median of paired differences)",
            "handler modules alone ms",
        ],
        rows,
    )
    ours = _importtime_ours(importtimes)
    text += "\n\n`python -X importtime` after boto3 + x509 are loaded (median of 5, µs):\n\n"
    text += table(["module", "self µs", "cumulative µs"], [[m, s, c] for m, s, c in ours[:10]])
    made = clients["clients"]
    text += (
        f"\n\nboto3/botocore clients created by `import handler.app`: **{len(made)}**"
        f"{' (' + ', '.join(made) + ')' if made else ''}; module-level store client created: "
        f"{clients['store_client']}"
    )
    result = {
        "overhead": paired(labels[1]),
        "overhead_handler_no_pyc": paired(labels[2]),
        "overhead_artifact_no_pyc": paired(labels[3]),
        "own_modules": median([s["own"] for s in samples[labels[-1]]]),
        "clients": len(made),
    }
    return text, result


def _importtime_ours(runs: list[str]) -> list[tuple[str, int, int]]:
    """Our modules in ``-X importtime`` output: median self and cumulative µs."""
    found: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
    for stderr in runs:
        for line in stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s+(\S+)", line)
            if match and match.group(3).startswith("handler"):
                found[match.group(3)].append((int(match.group(1)), int(match.group(2))))
    rows = [
        (name, int(median([a for a, _ in v])), int(median([b for _, b in v])))
        for name, v in found.items()
    ]
    return sorted(rows, key=lambda r: -r[2])
