"""What each request costs: SSM calls, latency, cold start, memory, artifact size.

Run with ``make bench`` (or ``.venv/bin/python bench/run.py``). Prints markdown tables and
rewrites the generated part of ``docs/BENCHMARKS.md`` (between the ``bench:begin``/``bench:end``
markers; the hand-written notes around them are kept).

Everything runs against in-memory moto with fake credentials: it never talks to AWS. The
handler is measured as shipped: the script only wraps functions from the outside (to split
the time into parse, verify and SSM) and replaces the CloudFormation response sender.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calls import ssm_calls
from harness import Harness, mock_aws
from latency import reuse_latency
from openssl import creates_vs_openssl
from report import DOC, ROOT, cpu, median, ms, table, write_section

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

# --------------------------------------------------------------------------- helpers


def machine() -> dict[str, str]:
    openssl = subprocess.run(
        ["openssl", "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("cryptography", "boto3", "botocore", "crhelper", "moto")
    )
    return {
        "cpu": cpu(),
        "python": f"CPython {platform.python_version()} ({platform.machine()})",
        "libraries": versions,
        "openssl": openssl or "not found",
    }


# --------------------------------------------------------------------------- measurements


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


def _subprocess_env(
    pycache: Path | None, write_bytecode: bool, path: Path = ROOT
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(path)
    if pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


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
    import crhelper
    import cryptography
    import pycparser  # type: ignore[import-untyped]

    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "handler", target / "handler", ignore=skip)
    for module in (cffi, crhelper, cryptography, pycparser):
        source = Path(module.__file__ or "").parent
        shutil.copytree(source, target / source.name, ignore=skip)
    for backend in Path(cffi.__file__ or "").parent.parent.glob("_cffi_backend*"):
        shutil.copy2(backend, target / backend.name)


def cold_start(runs: int) -> tuple[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-pyc-") as tmp:
        cached = _subprocess_env(Path(tmp, "cached"), write_bytecode=True)
        # handler/ alone without .pyc, then everything the artifact bundles without .pyc, as
        # scripts/build_artifact.sh ships it: compiled at every cold start, since Lambda's
        # /var/task is read-only (boto3 keeps its bytecode, as in the runtime).
        shutil.copytree(
            ROOT / "handler", Path(tmp, "src", "handler"), ignore=shutil.ignore_patterns("*.pyc")
        )
        source_only = _subprocess_env(None, write_bytecode=False, path=Path(tmp, "src"))
        _artifact_layout(Path(tmp, "artifact"))
        artifact_like = _subprocess_env(None, write_bytecode=False, path=Path(tmp, "artifact"))
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
    """Our modules (and crhelper) in ``-X importtime`` output: median self and cumulative µs."""
    found: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
    for stderr in runs:
        for line in stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s+(\S+)", line)
            if match and match.group(3).startswith(("handler", "crhelper")):
                found[match.group(3)].append((int(match.group(1)), int(match.group(2))))
    rows = [
        (name, int(median([a for a, _ in v])), int(median([b for _, b in v])))
        for name, v in found.items()
    ]
    return sorted(rows, key=lambda r: -r[2])


# Peak RSS of this process: VmHWM, because ru_maxrss carries the forking parent's peak across
# exec (Linux keeps the larger of the two), which would report the benchmark's own size.
_PEAK = """
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0].split()[1]
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"maxrss_kb": maxrss, "hwm_kb": int(hwm)}))
"""

_MEMORY = """
import os, resource, json, logging, sys
logging.getLogger().addHandler(logging.StreamHandler(open(os.devnull, "w")))
mode, algorithm = sys.argv[1], sys.argv[2]
from moto import mock_aws
with mock_aws():
    if mode == "moto-ssm":  # moto's SSM backend loaded and answering, no handler
        import boto3
        boto3.client("ssm", region_name="us-east-1").get_parameters(Names=["absent"])
    if mode == "create":
        import boto3
        from devkit.events import LambdaContext, event
        from handler import app
        from handler.store import ParameterStore
        app.store = ParameterStore(boto3.client("ssm", region_name="us-east-1"))
        sent = []
        app.helper.send_response = lambda url, body: sent.append(body) or True
        props = {"Rack": "memory", "KeyAlgorithm": algorithm}
        app.lambda_handler(event("Create", app.GENERATOR, "DockerTLS", props,
                                 response_url="https://example/r"), LambdaContext())
        assert sent[0]["Status"] == "SUCCESS", sent
"""

# Lambda-like: no moto at all; the SSM client is a dict behind the same method names.
_MEMORY_NO_MOTO = """
import os, resource, json, logging, sys
logging.getLogger().addHandler(logging.StreamHandler(open(os.devnull, "w")))
algorithm = sys.argv[1]
from devkit.events import LambdaContext, event
from handler import app, store
store.default_client()  # what the real client costs, though the calls go to a dict
class DictSSM:
    def __init__(self): self.values = {}
    def get_parameters(self, Names, WithDecryption):
        return {"Parameters": [dict(Name=n, Value=v[0], Type=v[1], Version=1)
                               for n, v in self.values.items() if n in Names]}
    def put_parameter(self, Name, Value, Type, Overwrite, Tier, KeyId=None):
        self.values[Name] = (Value, Type); return {"Version": 1}
    def delete_parameters(self, Names):
        return {"DeletedParameters": [n for n in Names if self.values.pop(n, None)]}
app.store = store.ParameterStore(DictSSM())
sent = []
app.helper.send_response = lambda url, body: sent.append(body) or True
props = {"Rack": "memory", "KeyAlgorithm": algorithm}
app.lambda_handler(event("Create", app.GENERATOR, "DockerTLS", props,
                         response_url="https://example/r"), LambdaContext())
assert sent[0]["Status"] == "SUCCESS", sent
"""


def memory() -> tuple[str, dict[str, float]]:
    env = _subprocess_env(None, write_bytecode=False)

    def peak(code: str, *args: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", code + _PEAK, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return float(json.loads(out.stdout)["hwm_kb"]) / 1024

    bare = peak(_MEMORY, "baseline", "-")
    baseline = peak(_MEMORY, "moto-ssm", "-")
    rows = [
        ["`import moto` + `mock_aws()`, nothing else", f"{bare:.1f}", ""],
        ["moto with its SSM backend loaded (one GetParameters), no handler", f"{baseline:.1f}",
         "(moto's share)"],
    ]  # fmt: skip
    result = {"moto_baseline": baseline}
    for algorithm in ("RSA-2048", "RSA-4096"):
        full = peak(_MEMORY, "create", algorithm)
        rows.append(
            [f"full Create {algorithm} against moto", f"{full:.1f}", f"{full - baseline:+.1f}"]
        )
        lean = peak(_MEMORY_NO_MOTO, algorithm)
        rows.append(
            [f"full Create {algorithm}, no moto (dict SSM, real boto3 client made)",
             f"{lean:.1f}", "(the handler alone)"]
        )  # fmt: skip
        result[algorithm] = full
        result[f"{algorithm} no moto"] = lean
    return table(["fresh process", "peak RSS (VmHWM) MB", "over moto's share MB"], rows), result


def artifact() -> tuple[str, dict[str, float]]:
    script = ROOT / "scripts" / "build_artifact.sh"
    with tempfile.TemporaryDirectory(prefix="bench-artifact-") as tmp:
        target = Path(tmp, "package")
        if script.exists():
            how = "scripts/build_artifact.sh DIR"
            out = subprocess.run(
                ["bash", str(script), str(target)],
                cwd=ROOT,
                env={**os.environ, "PYTHON": sys.executable},
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                return f"scripts/build_artifact.sh failed:\n\n```\n{out.stderr[-2000:]}\n```", {}
        else:
            how = (
                "pip install --platform manylinux2014_aarch64 --implementation cp "
                "--python-version 3.13 --only-binary=:all: --no-compile --target DIR "
                "crhelper cryptography; cp -r handler DIR"
            )
            pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run(
                [*pip, "--platform", "manylinux2014_aarch64", "--implementation", "cp",
                 "--python-version", "3.13", "--only-binary=:all:", "--no-compile",
                 "--target", str(target), "crhelper", "cryptography"],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            shutil.copytree(
                ROOT / "handler", target / "handler", ignore=shutil.ignore_patterns("__pycache__")
            )
        archive = Path(tmp, "function.zip")
        unzipped = handler_bytes = 0
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            for path in sorted(target.rglob("*")):
                if path.is_file():
                    z.write(path, path.relative_to(target))
                    unzipped += path.stat().st_size
                    if path.relative_to(target).parts[0] == "handler":
                        handler_bytes += path.stat().st_size
        zipped = archive.stat().st_size
        top = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info"))
    mb = 1024 * 1024
    text = table(
        ["artifact (arm64, Python 3.13, no boto3)", "size"],
        [
            ["zipped (deflate -9)", f"{zipped / mb:.2f} MB"],
            ["unzipped", f"{unzipped / mb:.2f} MB"],
            ["of which handler/", f"{handler_bytes / 1024:.0f} KB"],
        ],
    )
    text += f"\n\nBuilt with `{how}`; top level: {', '.join(top)}"
    return text, {"zipped": zipped / mb, "unzipped": unzipped / mb}


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Target:
    """A figure the project promises, judged on every run's value, never on a lucky one."""

    name: str
    wanted: str
    unit: str
    worst: Callable[[list[float]], float]  # the conservative figure: max of a cost, min of a gain
    met: Callable[[float], bool]
    value: Callable[[dict[str, Any]], float]  # one run's figure from its results


TARGETS = [
    Target("Update-reuse SSM reads", "1", "", max, lambda v: v == 1,
           lambda r: r["calls"]["Update, reuse"]["reads"]),
    Target("Update-reuse SSM writes", "0", "", max, lambda v: v == 0,
           lambda r: r["calls"]["Update, reuse"]["writes"]),
    Target("Update-reuse handler compute, RSA-2048 (median of the run)", "≤ 10", "ms", max,
           lambda v: v <= 10, lambda r: r["reuse"]["handler compute (total - SSM)"] * 1000),
    Target("OpenSSL recipe / our Create, RSA-2048 (medians of the run)", "≥ 4", "x", min,
           lambda v: v >= 4, lambda r: r["create"]["openssl_ratio"]),
    Target("cold-start overhead over bare boto3 + x509", "≤ 20", "ms", max,
           lambda v: v <= 20, lambda r: r["cold"]["overhead"] * 1000),
    Target("boto3 clients created at import", "0", "", max, lambda v: v == 0,
           lambda r: r["cold"]["clients"]),
    Target("peak RSS, Create RSA-4096, handler without moto", "≤ 100", "MB", max,
           lambda v: v <= 100, lambda r: r["memory"]["RSA-4096 no moto"]),
]  # fmt: skip


def targets(runs: list[dict[str, Any]]) -> str:
    """The targets table and the sentence that sums it up, from the same numbers."""
    rows: list[list[Any]] = []
    missed: list[str] = []
    for target in TARGETS:
        values = [target.value(run) for run in runs]
        worst = target.worst(values)
        ok = target.met(worst)
        if not ok:
            missed.append(f"{target.name} ({worst:g}{target.unit}, wanted {target.wanted})")

        def shown(value: float, unit: str = target.unit) -> str:
            return f"{value:.1f}{unit}" if unit else f"{value:g}"

        rows.append(
            [
                target.name,
                f"{target.wanted}{target.unit}",
                len(values),
                shown(min(values)),
                shown(median(values)),
                shown(max(values)),
                f"{'max' if target.worst is max else 'min'}: {shown(worst)}",
                "yes" if ok else "**no**",
            ]
        )
    text = table(["target", "wanted", "runs", "min", "median", "max", "judged on", "met"], rows)
    verdict = (
        f"**All {len(TARGETS)} targets are met** on the conservative figure of {len(runs)} runs."
        if not missed
        else f"**{len(TARGETS) - len(missed)} of {len(TARGETS)} targets are met** on the "
        f"conservative figure of {len(runs)} runs; not met: {'; '.join(missed)}."
    )
    return f"{verdict}\n\n{text}"


def write_doc(generated: str) -> None:
    write_section(BEGIN, END, generated, DOC)


def measure(args: argparse.Namespace) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """One run of every measurement: its tables and its figures."""
    sections: list[tuple[str, str]] = []
    results: dict[str, Any] = {}

    def step(title: str, run: Callable[[], tuple[str, Any]], key: str) -> None:
        t0 = time.perf_counter()
        print(f"… {title}", file=sys.stderr, flush=True)
        text, result = run()
        results[key] = result
        sections.append((title, text))
        print(f"   ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    with mock_aws():
        h = Harness()
        step(
            "SSM calls per request (counted at botocore's before-call)",
            lambda: ssm_calls(h),
            "calls",
        )
        step(
            "Update-reuse latency, in-process against moto",
            lambda: reuse_latency(h, max(args.runs, 50)),
            "reuse",
        )
        print("… Create per KeyAlgorithm, and against OpenSSL", file=sys.stderr, flush=True)
        create_table, compare, create = creates_vs_openssl(h, args.runs, args.openssl_runs)
        results["create"] = create
        sections.append(("Create latency per KeyAlgorithm, in-process against moto", create_table))
        sections.append(("Against the OpenSSL command-line recipe (interleaved runs)", compare))
    step("Cold start (fresh interpreters, interleaved)", lambda: cold_start(args.cold_runs), "cold")
    step("Peak memory of a fresh process (VmHWM)", memory, "memory")
    return sections, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="in-process runs (≥20)")
    parser.add_argument("--openssl-runs", type=int, default=20, help="OpenSSL runs (≥10)")
    parser.add_argument("--cold-runs", type=int, default=20, help="fresh interpreters (≥10)")
    parser.add_argument("--repeat", type=int, default=3, help="whole runs; targets use all")
    parser.add_argument("--skip-artifact", action="store_true", help="no pip download")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if shutil.which("openssl") is None:
        print("bench needs the openssl command (apt-get install openssl)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    info = machine()
    runs: list[dict[str, Any]] = []
    sections: list[tuple[str, str]] = []
    for number in range(1, args.repeat + 1):
        print(f"run {number} of {args.repeat}", file=sys.stderr, flush=True)
        sections, results = measure(args)
        runs.append(results)
    if not args.skip_artifact:
        sections.append(("Artifact size", artifact()[0]))
    elapsed = time.perf_counter() - started
    header = (
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `make bench` "
        f"in {elapsed:.0f} s."
        f"\n\n- Machine: {info['cpu']}; {info['python']}\n- {info['libraries']}\n"
        f"- {info['openssl']}\n- Absolute times are for this machine (a shared, noisy "
        "2-core box); ratios and counts are the portable results.\n"
    )
    out = io.StringIO()
    out.write(header + "\n### Targets\n\n" + targets(runs) + "\n")
    out.write(f"\nThe tables below are from the last of the {args.repeat} runs.\n")
    for title, text in sections:
        out.write(f"\n### {title}\n\n{text}\n")
    report = out.getvalue()
    print(report)
    if not args.no_write:
        write_doc(report)
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
