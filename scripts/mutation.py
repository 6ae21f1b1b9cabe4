"""Mutation testing of the handler's core: do the fast tests notice when the code changes?

    make mutation          (python scripts/mutation.py [--per-module N] [--workers N] [--seed N])

Each mutant changes one thing in one module (a comparison or boolean operator, a constant, a
returned value, a call left out) and runs the fast tests that concern that module against it
(no daemon, no SAM; the first failure kills it). A mutant no test kills "survives". The
report, docs/MUTATION.md, gives per module how many were tried, killed and survived, and lists
every survivor with the reason it is equivalent (the code behaves the same), from
scripts/mutation_equivalents.toml; a survivor without a reason there is a gap in the tests,
and the run fails.

How mutants are chosen: every mutation point of every module is enumerated from its syntax tree
(docstrings, log calls and type annotations are left alone: their text is not behaviour), then
``--per-module`` of them are sampled with a fixed seed, so a run is repeatable and a rerun after
a code change samples the same way. Workers (``--workers``, default: the CPU count) each run in
a copy of the tree, so mutants never touch the working tree.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import datetime as dt
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "MUTATION.md"
EQUIVALENTS = ROOT / "scripts" / "mutation_equivalents.toml"

#: module -> the fast tests that concern it (a failing one kills the mutant).
MODULES: dict[str, list[str]] = {
    "bundle": ["tests/test_ensure.py", "tests/test_rotation.py", "tests/test_app.py"],
    "ensure": ["tests/test_ensure.py", "tests/test_rotation.py", "tests/test_app.py"],
    "rotation": ["tests/test_rotation.py", "tests/test_cli.py"],
    "properties": ["tests/test_properties.py", "tests/test_app.py"],
    "store": ["tests/test_store.py", "tests/test_ensure.py", "tests/test_app.py"],
    "cfn": ["tests/test_cfn.py", "tests/test_app.py", "tests/test_e2e.py"],
    "certificates": [
        "tests/test_certificates.py",
        "tests/test_ensure.py",
        "tests/test_rotation.py",
    ],
}
#: Only the fast tests: a mutant that only the slow fuzz, fault-matrix, concurrency or timing
#: tests catch is a sign the fast ones miss it.
SELECTION = "not dockerd and not sam and not slow"
TIMEOUT = 240  # seconds for one mutant's tests: a hang counts as killed (the tests noticed)

_FLIP = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
_LOG_CALLS = {"debug", "info", "warning", "error", "exception"}


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the mutation point's position in the module's enumeration
    line: int
    code: str  # the line's source, stripped: what identifies the mutant across edits
    description: str  # what changed, e.g. "Eq -> NotEq" or "return value -> None"

    @property
    def key(self) -> str:
        """Stable across runs while the line's code and the mutation stay the same."""
        return f"{self.module}|{self.code}|{self.description}"


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """ids of nodes whose mutation is not behaviour: docstrings, annotations, log calls, and the
    entries of data tables (a literal collection of five or more constants: each entry is one
    more datum, not logic; the tests check the rule that uses the table)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Set | ast.List | ast.Tuple)
            and len(node.elts) >= 5
            and all(isinstance(e, ast.Constant) for e in node.elts)
        ):
            skipped.update(id(e) for e in node.elts)
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            skipped.update(id(n) for n in ast.walk(body[0]))
        for annotation in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if annotation is not None:
                skipped.update(id(n) for n in ast.walk(annotation))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _LOG_CALLS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "log"
        ):
            skipped.update(id(n) for n in ast.walk(node))
    return skipped


def _points(tree: ast.Module) -> list[tuple[ast.AST, str, str]]:
    """(node, kind, description) for every mutation point, in a stable order."""
    skipped = _skipped_nodes(tree)
    points: list[tuple[ast.AST, str, str]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Compare):
            for position, op in enumerate(node.ops):
                if type(op) in _FLIP:
                    flipped = _FLIP[type(op)].__name__
                    points.append((node, f"cmp:{position}", f"{type(op).__name__} -> {flipped}"))
        elif isinstance(node, ast.BoolOp):
            other = "Or" if isinstance(node.op, ast.And) else "And"
            points.append((node, "boolop", f"{type(node.op).__name__} -> {other}"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            points.append((node, "not", "not x -> x"))
        elif isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            points.append(
                (node, "arith", f"{type(node.op).__name__} -> {_ARITH[type(node.op)].__name__}")
            )
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                points.append((node, "const", f"{value} -> {not value}"))
            elif isinstance(value, int):
                points.append((node, "const", f"{value} -> {value + 1}"))
            elif isinstance(value, float):
                points.append((node, "const", f"{value} -> {value * 2}"))
            elif isinstance(value, str) and value:
                points.append((node, "const", f"{value[:30]!r} -> 'XX'+…"))
        elif isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                points.append((node, "return", "return value -> None"))
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and id(node.value) not in skipped
        ):
            points.append((node, "drop", "call left out"))
    return points


class _Mutator(ast.NodeTransformer):
    def __init__(self, target: ast.AST, kind: str) -> None:
        self.target, self.kind = target, kind

    def visit(self, node: ast.AST) -> ast.AST:
        if node is not self.target:
            return self.generic_visit(node)
        kind = self.kind
        if kind.startswith("cmp:") and isinstance(node, ast.Compare):
            position = int(kind.split(":")[1])
            node.ops[position] = _FLIP[type(node.ops[position])]()
        elif kind == "boolop" and isinstance(node, ast.BoolOp):
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        elif kind == "not" and isinstance(node, ast.UnaryOp):
            return node.operand
        elif kind == "arith" and isinstance(node, ast.BinOp):
            node.op = _ARITH[type(node.op)]()
        elif kind == "const" and isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                node.value = not value
            elif isinstance(value, int):
                node.value = value + 1
            elif isinstance(value, float):
                node.value = value * 2
            elif isinstance(value, str):
                node.value = "XX" + value + "XX"
        elif kind == "return" and isinstance(node, ast.Return):
            node.value = ast.Constant(None)
        elif kind == "drop":
            return ast.Pass()
        return node


def mutants_of(module: str) -> tuple[list[Mutant], str]:
    source = (ROOT / "handler" / f"{module}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    lines = source.splitlines()
    found = []
    seen: dict[tuple[int, str], int] = {}
    for index, (node, _, description) in enumerate(_points(tree)):
        line = getattr(node, "lineno", 0)
        # Two mutants alike on one line (two '<' in a chain) are told apart by their order.
        count = seen[line, description] = seen.get((line, description), 0) + 1
        shown = description if count == 1 else f"{description} (#{count} on the line)"
        found.append(Mutant(module, index, line, lines[line - 1].strip(), shown))
    return found, source


def mutated_source(mutant: Mutant, source: str) -> str:
    tree = ast.parse(source)
    node, kind, _ = _points(tree)[mutant.index]
    mutated = _Mutator(node, kind).visit(tree)
    return ast.unparse(ast.fix_missing_locations(mutated))


def _copy_tree(destination: Path) -> None:
    for name in ("handler", "devkit", "docker_tls_cli", "tests", "events", "scripts", "bench"):
        shutil.copytree(
            ROOT / name, destination / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    for name in ("pyproject.toml", "template.yaml", "Makefile", "samconfig.toml"):
        shutil.copy2(ROOT / name, destination / name)


def _run(workdir: Path, mutant: Mutant, source: str) -> tuple[Mutant, str, float]:
    """Run one mutant's tests in ``workdir``: 'killed', 'survived' or 'timeout'."""
    target = workdir / "handler" / f"{mutant.module}.py"
    target.write_text(mutated_source(mutant, source), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(workdir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "CI": "",  # a skip is a skip here: the mutant is judged on what ran
    }
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    tests = [name for name in MODULES[mutant.module] if (workdir / name).exists()]
    command += ["-m", SELECTION, "-o", "addopts=", *tests]
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, timeout=TIMEOUT, check=False
        )
        verdict = "survived" if result.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        verdict = "timeout"
    finally:
        target.write_text(source, encoding="utf-8")
    return mutant, verdict, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-module", type=int, default=20, help="mutants sampled per module")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--modules", nargs="*", default=list(MODULES))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    equivalents = (
        tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8")) if EQUIVALENTS.exists() else {}
    )
    reasons: dict[str, str] = {
        f"{entry['module']}|{entry['code']}|{entry['mutation']}": entry["reason"]
        for entry in equivalents.get("equivalent", [])
    }
    rng = random.Random(args.seed)  # noqa: S311 (a repeatable sample, not a secret)
    chosen: list[tuple[Mutant, str]] = []
    totals: dict[str, int] = {}
    for module in args.modules:
        mutants, source = mutants_of(module)
        totals[module] = len(mutants)
        picked = sorted(
            rng.sample(mutants, min(args.per_module, len(mutants))), key=lambda m: m.index
        )
        chosen += [(m, source) for m in picked]
    print(
        f"mutation: {len(chosen)} mutants over {len(args.modules)} modules, {args.workers} workers",
        file=sys.stderr,
    )
    started = time.monotonic()
    results: list[tuple[Mutant, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        workdirs = []
        for number in range(args.workers):
            workdir = Path(tmp) / f"w{number}"
            _copy_tree(workdir)
            workdirs.append(workdir)
        pending = list(chosen)
        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
            free = list(workdirs)
            running: dict[concurrent.futures.Future[tuple[Mutant, str, float]], Path] = {}
            while pending or running:
                while pending and free:
                    mutant, source = pending.pop(0)
                    workdir = free.pop()
                    running[pool.submit(_run, workdir, mutant, source)] = workdir
                done, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    free.append(running.pop(future))
                    mutant, verdict, seconds = future.result()
                    results.append((mutant, verdict, seconds))
                    print(
                        f"  {mutant.key}: {verdict} ({seconds:.0f} s)", file=sys.stderr, flush=True
                    )
    elapsed = time.monotonic() - started
    report, gaps = _report(results, totals, reasons, args, elapsed)
    print(report)
    missing = [m for m, verdict, _ in results if verdict == "survived" and m.key not in reasons]
    if missing:
        print("\nSurvivors without a reason, as scripts/mutation_equivalents.toml entries:")
        for mutant in missing:
            print(
                f"\n[[equivalent]]\nmodule = {mutant.module!r}\ncode = {_toml(mutant.code)}\n"
                f'mutation = {_toml(mutant.description)}\nreason = ""'
            )
    if not args.no_write:
        REPORT.write_text(report, encoding="utf-8")
        print(f"wrote {REPORT.relative_to(ROOT)}", file=sys.stderr)
    return 1 if gaps else 0


def _toml(text: str) -> str:
    import json

    return json.dumps(text)  # a TOML basic string is JSON's string syntax for these


def _report(
    results: list[tuple[Mutant, str, float]],
    totals: dict[str, int],
    reasons: dict[str, str],
    args: argparse.Namespace,
    elapsed: float,
) -> tuple[str, int]:
    lines = [
        "# Mutation testing",
        "",
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `make mutation` in "
        f"{elapsed / 60:.1f} minutes ({args.workers} workers, seed {args.seed}, up to "
        f"{args.per_module} mutants per module). How mutants are made and chosen: the docstring "
        "of scripts/mutation.py. A survivor is either equivalent (the reason is given, from "
        "scripts/mutation_equivalents.toml) or a gap in the tests (the run fails).",
        "",
        "| module | mutation points | tried | killed | survived: equivalent | survived: gap "
        "| killed of non-equivalent |",
        "|---|---|---|---|---|---|---|",
    ]
    gaps = 0
    survivors: list[str] = []
    for module in sorted(totals):
        mine = [(m, v) for m, v, _ in results if m.module == module]
        killed = sum(1 for _, v in mine if v in ("killed", "timeout"))
        equivalent = [m for m, v in mine if v == "survived" and m.key in reasons]
        missed = [m for m, v in mine if v == "survived" and m.key not in reasons]
        gaps += len(missed)
        relevant = len(mine) - len(equivalent)
        score = f"{100 * killed / relevant:.0f} %" if relevant else "-"
        lines.append(
            f"| {module} | {totals[module]} | {len(mine)} | {killed} | {len(equivalent)} | "
            f"{len(missed)} | {score} |"
        )
        for m in equivalent:
            survivors.append(f"- `handler/{module}.py:{m.line}` {m.description}: {reasons[m.key]}")
        for m in missed:
            survivors.append(
                f"- `handler/{module}.py:{m.line}` {m.description}: **not killed: a gap**"
            )
    lines += ["", "## Survivors", ""]
    lines += survivors or ["None."]
    return "\n".join(lines) + "\n", gaps


if __name__ == "__main__":
    sys.exit(main())
