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
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from artifact import artifact
from calls import ssm_calls
from cold_start import cold_start
from harness import Harness, mock_aws
from latency import reuse_latency
from memory import memory
from openssl import creates_vs_openssl
from report import DOC, ROOT, cpu, median, table, write_section

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
