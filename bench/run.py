"""What each request costs: SSM calls, latency, cold start, memory, artifact size.

Run with ``make bench`` (or ``.venv/bin/python bench/run.py``). Prints markdown tables and
rewrites the generated part of ``docs/BENCHMARKS.md`` (between the ``bench:begin``/``bench:end``
markers; the hand-written notes around them are kept).

Everything runs against in-memory moto with fake credentials: it never talks to AWS. This
script is the driver: it parses the arguments, repeats every measure (``--repeat`` whole runs,
which the targets judge together), and writes the document. Each measure is a module of its
own, with what it measures and why at its top:

- harness.py: the handler in-process against moto, measured as shipped (wrapped from outside);
- calls.py: SSM calls per request;
- latency.py: Update-reuse and Create latency, per KeyAlgorithm;
- openssl.py: a Create against the OpenSSL command-line recipe from Docker's docs;
- cold_start.py: what importing the handler adds to a fresh interpreter;
- memory.py: peak RSS of a fresh process serving one Create;
- artifact.py: the size of the zip Lambda is given;
- targets.py: the figures the project promises, judged on every run;
- report.py: statistics, tables and the document's generated section (shared with runtime.py).
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
from typing import Any

from artifact import artifact
from calls import ssm_calls
from cold_start import cold_start
from harness import Harness, mock_aws
from latency import reuse_latency
from memory import memory
from openssl import creates_vs_openssl
from report import DOC, ROOT, cpu, write_section
from targets import targets

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine() -> dict[str, str]:
    """What the figures were measured on: CPU, Python, library versions, OpenSSL."""
    openssl = subprocess.run(
        ["openssl", "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("cryptography", "boto3", "botocore", "moto")
    )
    return {
        "cpu": cpu(),
        "python": f"CPython {platform.python_version()} ({platform.machine()})",
        "libraries": versions,
        "openssl": openssl or "not found",
    }


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
