"""Run the reliability tests and write docs/RELIABILITY.md from what they recorded.

Every figure in the document comes from this run: each reliability test records what it
exercised and what happened through pytest's ``record_property`` (see
``tests/reliability_support.figure``), pytest writes them to a JUnit XML file, and this script
counts them. A failing test is reported as such, and the script then exits non-zero.

    python scripts/reliability_report.py [--output docs/RELIABILITY.md] [--junit existing.xml]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_reliability_*.py"))


@dataclass
class Case:
    file: str
    name: str
    outcome: str  # passed, failed, error, skipped
    seconds: float
    props: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.props.get(f"reliability_{key}", default)

    def json(self, key: str) -> object:
        value = self.get(key)
        try:
            return json.loads(value)
        except (TypeError, ValueError):
            return value


def run_pytest(junit: Path) -> tuple[int, float]:
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS]
    command += [f"--junitxml={junit}", "-o", "junit_family=xunit1"]
    result = subprocess.run(command, cwd=ROOT, check=False)
    return result.returncode, time.monotonic() - started


def read_cases(junit: Path) -> list[Case]:
    cases = []
    for testcase in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 (our own file)
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if testcase.find(tag) is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
        props = {
            p.get("name", ""): p.get("value", "")
            for p in testcase.iter("property")
            if p.get("name", "").startswith("reliability_")
        }
        file = testcase.get("file") or testcase.get("classname", "").replace(".", "/") + ".py"
        cases.append(
            Case(file, testcase.get("name", ""), outcome, float(testcase.get("time", 0)), props)
        )
    return cases


def _status(cases: list[Case]) -> str:
    bad = [c for c in cases if c.outcome in ("failed", "error")]
    return "all passed" if not bad else f"**{len(bad)} FAILED**"


def _cell(cases: list[Case]) -> str:
    if not cases:
        return "-"
    parts = []
    for case in sorted(cases, key=lambda c: c.get("mode")):
        mark = "" if case.outcome == "passed" else " ✗"
        tag = "T" if case.get("mode") == "transient" else "P"
        result = "ok" if "SUCCESS" in case.get("outcome") else "FAILED"
        parts.append(f"{tag}: {result} ({case.get('attempts')}){mark}")
    return " / ".join(parts)


def faults_section(cases: list[Case]) -> list[str]:
    faults = [c for c in cases if c.get("category") == "ssm-fault"]
    if not faults:
        return []
    kinds = list(dict.fromkeys(c.get("kind") for c in faults))
    calls = list(dict.fromkeys(c.get("call") for c in faults))
    by_cell: dict[tuple[str, str], list[Case]] = defaultdict(list)
    for case in faults:
        by_cell[(case.get("call"), case.get("kind"))].append(case)
    outcomes = Counter(c.get("outcome") for c in faults)
    lines = [
        "## 1. SSM faults on each call",
        "",
        f"{len(faults)} cases: {len(kinds)} fault kinds x {len(calls)} calls x transient "
        "(fails 2 attempts, then passes) / persistent (fails every attempt), injected at the "
        "HTTP layer (a botocore `before-send` hook) of a client built with the production "
        "config, against moto's SSM server over HTTP: botocore's standard-mode retry really "
        f"runs. {_status(faults)}.",
        "",
        "Cell: `T` transient, `P` persistent; `ok` = SUCCESS, `FAILED` = FAILED response; "
        "(n) = HTTP attempts of the faulted call. `PutParameter#k` is the Create's k-th write "
        "(the owner record, CA key, CA cert, server key, server cert, client key, client cert); "
        "GetParameters faults hit an Update of a healthy bundle, DeleteParameters faults a "
        "Delete (a recovering one then removes the owner record in a call of its own: one "
        "attempt more).",
        "",
        "| call | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for call in calls:
        row = [_cell(by_cell.get((call, kind), [])) for kind in kinds]
        lines.append(f"| {call} | " + " | ".join(row) + " |")
    lines += ["", "Outcomes:", ""]
    lines += [f"- {outcome}: {count}" for outcome, count in sorted(outcomes.items())]
    lines += [
        "",
        "Every FAILED read left zero writes and every parameter version unchanged; every FAILED "
        "write left exactly the earlier writes, and a later Update converged on a healthy bundle "
        "keeping any CA key already stored. Non-retryable errors (access denied, KMS) made one "
        "attempt; `TooManyUpdates` is retried by the store itself (botocore does not).",
        "",
    ]
    return lines


def crash_section(cases: list[Case]) -> list[str]:
    crashes = [c for c in cases if c.get("category") == "crash-point"]
    if not crashes:
        return []
    lines = [
        "## 1b. Crash consistency",
        "",
        f"{len(crashes)} interruption points: a generation interrupted after its k-th write "
        "(k = 0 … all writes; `crash` = the process dies, `write-error` = the next write fails), "
        f"then a fresh ensure. {_status(crashes)}.",
        "",
        "| scenario | writes | crash points (k) | interrupts | repair actions seen | result |",
        "|---|---|---|---|---|---|",
    ]
    by_scenario: dict[str, list[Case]] = defaultdict(list)
    for case in crashes:
        by_scenario[case.get("scenario")].append(case)
    for scenario, group in by_scenario.items():
        ks = sorted({int(str(c.json("k"))) for c in group})
        lines.append(
            f"| {scenario} | {max(ks)} | {min(ks)}…{max(ks)} ({len(ks)}) | "
            f"{', '.join(sorted({c.get('interrupt') for c in group}))} | "
            f"{', '.join(sorted({c.get('repair') for c in group}))} | "
            f"{group[0].get('outcome')}: {_status(group)} |"
        )
    return [*lines, ""]


def input_section(cases: list[Case]) -> list[str]:
    events = [c for c in cases if c.get("category") == "bad-event"]
    stored = [c for c in cases if c.get("category") == "bad-stored-value"]
    lines = ["## 2. Bad input", ""]
    if events:
        lines += [
            f"**{len(events)} malformed events** through `lambda_handler` (on top of the "
            "parser-level cases in `tests/test_properties.py`), each with a healthy bundle "
            f"already stored: exactly one response within 5 s, zero SSM writes. "
            f"{_status(events)}.",
            "",
            "| outcome | events |",
            "|---|---|",
        ]
        for outcome, count in sorted(Counter(c.get("outcome") for c in events).items()):
            lines.append(f"| {outcome} | {count} |")
        lines.append("")
    if stored:
        lines += [
            f"**{len(stored)} corrupted stored values** (one parameter, or a swapped pair, of a "
            "healthy bundle), through an Update: SUCCESS with the decision rules' repair "
            "(docs/DESIGN.md §3), a healthy bundle after, and the CA untouched whenever the "
            "corruption was not in the CA. "
            f"{_status(stored)}.",
            "",
            "| repair (Action) | cases | corruptions |",
            "|---|---|---|",
        ]
        by_action: dict[str, list[Case]] = defaultdict(list)
        for case in stored:
            by_action[case.get("outcome")].append(case)
        for action, group in sorted(by_action.items()):
            values = sorted({c.get("value") for c in group})
            lines.append(f"| {action} | {len(group)} | {', '.join(values)} |")
        lines.append("")
    fuzz = [c for c in cases if c.get("category") == "fuzz"]
    if fuzz:
        lines += [
            "**Property-based** (hypothesis, `derandomize=True`, a fixed budget): "
            f"{_status(fuzz)}.",
            "",
            "| space | examples run | outcomes | checked |",
            "|---|---|---|---|",
        ]
        for case in fuzz:
            outcomes = case.json("outcomes")
            shown = (
                ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
                if isinstance(outcomes, dict)
                else str(outcomes)
            )
            lines.append(
                f"| {case.get('space')} | {case.get('examples')} | {shown} "
                f"| {case.get('outcome')} |"
            )
        lines.append("")
    return lines


def concurrency_section(cases: list[Case]) -> list[str]:
    runs = [c for c in cases if c.get("category") == "concurrency"]
    if not runs:
        return []
    lines = [
        "## 3. Concurrency",
        "",
        "Separate processes (as concurrent Lambda sandboxes are), each with its own boto3 "
        "client to moto's SSM server over HTTP and its own HTTPS response, released together by "
        f"a barrier; half Creates, half Updates. {_status(runs)}.",
        "",
        "| start | writers | rounds | result | actions answered | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for case in runs:
        actions = case.json("actions")
        lines.append(
            f"| {case.get('start')} | {case.get('writers')} | {case.get('rounds')} | "
            f"{case.get('outcome')} ({case.outcome}) | "
            f"{', '.join(actions) if isinstance(actions, list) else actions} | "
            f"{case.get('seconds')} |"
        )
    return [*lines, ""]


def response_section(cases: list[Case]) -> list[str]:
    checks = [c for c in cases if c.get("category") == "response-path"]
    if not checks:
        return []
    lines = [
        "## 4. Response path and timeout guard",
        "",
        f"{len(checks)} cases. {_status(checks)}.",
        "",
        "| case | outcome | test |",
        "|---|---|---|",
    ]
    for case in checks:
        detail = case.get("attempts") or case.get("seconds")
        suffix = f" ({detail})" if detail else ""
        lines.append(f"| {case.get('case')} | {case.get('outcome')}{suffix} | {case.outcome} |")
    return [*lines, ""]


def secrets_section(cases: list[Case]) -> list[str]:
    runs = [c for c in cases if c.get("category") == "secrets"]
    if not runs:
        return []
    lines = ["## 5. Secrets", ""]
    for case in runs:
        lines.append(
            f"A lifecycle of {case.get('invocations')} invocations (Create, reuse, SAN change, "
            "rotation, a getter for each of the six parameters, Delete) with the root, handler, "
            "botocore, boto3 and urllib3 loggers at DEBUG: "
            f"{case.get('log_records')} log records, the JSON handler's output, stdout/stderr "
            f"and every generator response searched for {case.get('secret_pieces_checked')} "
            "secret values and pieces, the session token, SigV4 signatures and the signed "
            f"query strings: {case.get('outcome')} ({case.outcome})."
        )
    return [*lines, ""]


def timing_section(cases: list[Case], wall: float | None) -> list[str]:
    per_file: dict[str, float] = defaultdict(float)
    counts: Counter[str] = Counter()
    for case in cases:
        name = Path(case.file).name
        per_file[name] += case.seconds
        counts[name] += 1
    lines = ["## Timings", "", "| file | tests | seconds (sum of test times) |", "|---|---|---|"]
    for name in sorted(per_file):
        lines.append(f"| {name} | {counts[name]} | {per_file[name]:.1f} |")
    total = sum(per_file.values())
    lines.append(f"| **total** | {sum(counts.values())} | {total:.1f} |")
    if wall is not None:
        lines += ["", f"Wall time of the run, with collection and fixtures: {wall:.0f} s."]
    return [*lines, ""]


def render(cases: list[Case], wall: float | None) -> str:
    outcomes = Counter(c.outcome for c in cases)
    head = [
        "# Reliability figures",
        "",
        "Generated by `make reliability` (`scripts/reliability_report.py`) from a run of "
        f"`{' '.join(Path(t).name for t in TESTS)}`; do not edit by hand. Every number below is "
        "counted from what the tests recorded in that run.",
        "",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python "
        f"{platform.python_version()} on {platform.machine()}; "
        + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
        + ".",
        "",
    ]
    body = (
        faults_section(cases)
        + crash_section(cases)
        + input_section(cases)
        + concurrency_section(cases)
        + response_section(cases)
        + secrets_section(cases)
        + timing_section(cases, wall)
    )
    return "\n".join(head + body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "RELIABILITY.md")
    parser.add_argument("--junit", type=Path, help="read this JUnit XML instead of running")
    args = parser.parse_args()
    wall: float | None = None
    code = 0
    if args.junit:
        cases = read_cases(args.junit)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "reliability.xml"
            code, wall = run_pytest(junit)
            cases = read_cases(junit)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(cases, wall))
    print(f"wrote {args.output} ({len(cases)} tests)")
    failed = [c for c in cases if c.outcome in ("failed", "error")]
    return 1 if failed or code not in (0,) else 0


if __name__ == "__main__":
    sys.exit(main())
