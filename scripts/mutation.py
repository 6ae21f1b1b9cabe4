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
``--per-module`` of them are sampled per seed. A run draws a fresh seed unless told which
(``--seed 7`` or ``--seed 7,8,9``; ``--seeds 3`` draws three fresh ones), and prints every seed
it uses, so any run can be repeated. A fresh draw never picks a seed listed as ``tuning_seeds`` in
scripts/mutation_equivalents.toml (those the tests were written against): a score on them could
be fitted to their sample. A mutant drawn by several seeds runs once. The report gives the kill
rate per module for each seed and over all of them (distinct mutants).

An equivalent is matched by module, the mutated line's code and the mutation, and, where the
same code occurs in several functions or classes, by ``scope`` (the enclosing ``Class.method``),
so whether a survivor counts as equivalent never depends on which look-alike a seed drew. Every
entry is checked against every mutation point, sampled or not: one that matches none (stale) or
several scopes without naming one (ambiguous) fails the run.

Workers (``--workers``, default: the CPU count) each run in a copy of the tree (every file git
knows of or would add: tests read docs and the template too), so mutants never touch the working
tree. Before any mutant, the copy must pass the same tests unmutated: a test that fails anyway
would "kill" every mutant it reaches. docs/MUTATION.md is rewritten only by a run over every
module.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "MUTATION.md"
EQUIVALENTS = ROOT / "scripts" / "mutation_equivalents.toml"

#: module -> the fast tests that concern it (a failing one kills the mutant).
MODULES: dict[str, list[str]] = {
    "bundle": [
        "tests/test_bundle.py",
        "tests/test_ensure.py",
        "tests/test_rotation.py",
        "tests/test_stale_events.py",
        "tests/test_app.py",
        "tests/test_certificate_profile.py",
    ],
    "ensure": [
        "tests/test_ensure.py",
        "tests/test_rotation.py",
        "tests/test_app.py",
        "tests/test_ownership.py",
        "tests/test_reliability_convox.py",
    ],
    "ownership": ["tests/test_ownership.py", "tests/test_app.py"],
    "rotation": [
        "tests/test_rotation.py",
        "tests/test_stale_events.py",
        "tests/test_cli.py",
        "tests/test_certificate_profile.py",
    ],
    "properties": ["tests/test_properties.py", "tests/test_app.py"],
    "store": [
        "tests/test_store.py",
        "tests/test_ensure.py",
        "tests/test_app.py",
        "tests/test_reliability_convox.py",
    ],
    "cfn": ["tests/test_cfn.py", "tests/test_app.py", "tests/test_e2e.py"],
    "event": ["tests/test_event.py", "tests/test_cfn.py", "tests/test_app.py"],
    "certificates": [
        "tests/test_certificates.py",
        "tests/test_certificate_profile.py",
        "tests/test_adopted_ca.py",
        "tests/test_ensure.py",
        "tests/test_rotation.py",
    ],
    "codec": [
        "tests/test_codec.py",
        "tests/test_certificates.py",
        "tests/test_ensure.py",
        "tests/test_rotation.py",
        "tests/test_adopted_ca.py",
    ],
    "stored": [
        "tests/test_stored.py",
        "tests/test_ensure.py",
        "tests/test_rotation.py",
        "tests/test_stale_events.py",
        "tests/test_app.py",
    ],
    "issuance": [
        "tests/test_certificate_profile.py",
        "tests/test_ensure.py",
        "tests/test_rotation.py",
        "tests/test_reliability_convox.py",
    ],
    "health": [
        "tests/test_health.py",
        "tests/test_ensure.py",
        "tests/test_rotation.py",
        "tests/test_app.py",
        "tests/test_certificate_profile.py",
        "tests/test_adopted_ca.py",
    ],
    "names": ["tests/test_app.py", "tests/test_ensure.py", "tests/test_ownership.py"],
    "model": [
        "tests/test_properties.py",
        "tests/test_app.py",
        "tests/test_stale_events.py",
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
    scope: str = ""  # the enclosing Class.function, "" at module level

    @property
    def key(self) -> str:
        """Stable across runs while the line's code and the mutation stay the same."""
        return f"{self.module}|{self.code}|{self.description}"


@dataclass(frozen=True)
class Equivalent:
    """An entry of scripts/mutation_equivalents.toml."""

    module: str
    code: str
    mutation: str
    reason: str
    scope: str | None = None  # required when the code occurs in several scopes

    @property
    def key(self) -> str:
        return f"{self.module}|{self.code}|{self.mutation}"

    def matches(self, mutant: Mutant) -> bool:
        return self.key == mutant.key and self.scope in (None, mutant.scope)


def load_equivalents(text: str) -> tuple[list[Equivalent], set[int]]:
    """The entries and the tuning seeds of an equivalents file."""
    data = tomllib.loads(text)
    entries = [
        Equivalent(e["module"], e["code"], e["mutation"], e["reason"], e.get("scope"))
        for e in data.get("equivalent", [])
    ]
    return entries, {int(seed) for seed in data.get("tuning_seeds", [])}


def equivalent_problems(
    entries: Iterable[Equivalent], every_point: dict[str, list[Mutant]]
) -> list[str]:
    """Entries that match no mutation point (stale), several scopes without naming one
    (ambiguous), carry no reason, or repeat an earlier entry (only the first one's reason is
    ever shown); judged on every point, so no seed can hide them."""
    problems = []
    seen: set[tuple[str, str, str, str | None]] = set()
    for entry in entries:
        if entry.module not in every_point:
            continue
        key = (entry.module, entry.code, entry.mutation, entry.scope)
        if key in seen:
            problems.append(f"repeated: {entry.module}: {entry.code!r} {entry.mutation}")
        seen.add(key)
        scopes = sorted({m.scope for m in every_point[entry.module] if entry.matches(m)})
        where = f"{entry.module}: {entry.code!r} {entry.mutation}"
        if not entry.reason.strip():
            problems.append(f"no reason: {where}")
        if not scopes:
            problems.append(f"stale (no such mutation point): {where}")
        elif len(scopes) > 1 and entry.scope is None:
            problems.append(f"ambiguous, add scope = one of {scopes}: {where}")
    return problems


def reason_for(mutant: Mutant, entries: Sequence[Equivalent]) -> str | None:
    scoped = [e for e in entries if e.scope is not None and e.matches(mutant)]
    found = scoped or [e for e in entries if e.matches(mutant)]
    return found[0].reason if found else None


def parse_seeds(text: str) -> list[int]:
    """``7`` or ``7,8,9``."""
    seeds = [int(part) for part in text.split(",") if part.strip()]
    if not seeds:
        raise ValueError("no seed given")
    return seeds


def fresh_seeds(count: int, avoid: set[int], draw: random.Random | None = None) -> list[int]:
    """``count`` distinct seeds from the system's entropy, none of ``avoid``."""
    draw = draw or random.SystemRandom()
    seeds: list[int] = []
    while len(seeds) < count:
        seed = draw.randrange(1, 2**31)
        if seed not in avoid and seed not in seeds:
            seeds.append(seed)
    return seeds


def sample(mutants: Sequence[Mutant], per_module: int, seed: int, module: str) -> list[Mutant]:
    """The mutants one seed draws from one module: the same for the same seed, module and
    code, whatever else the run does (each module has its own generator)."""
    rng = random.Random(f"{seed}:{module}")  # noqa: S311 (a repeatable sample, not a secret)
    ordered = sorted(mutants, key=lambda m: m.index)
    return sorted(rng.sample(ordered, min(per_module, len(ordered))), key=lambda m: m.index)


def _scopes(tree: ast.Module) -> dict[int, str]:
    """id(node) -> the qualified name of the function or class around it."""
    scopes: dict[int, str] = {}

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = f"{scope}.{child.name}" if scope else child.name
            scopes[id(child)] = inner
            visit(child, inner)

    visit(tree, "")
    return scopes


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
    scopes = _scopes(tree)
    lines = source.splitlines()
    found = []
    seen: dict[tuple[int, str], int] = {}
    for index, (node, _, description) in enumerate(_points(tree)):
        line = getattr(node, "lineno", 0)
        # Two mutants alike on one line (two '<' in a chain) are told apart by their order.
        count = seen[line, description] = seen.get((line, description), 0) + 1
        shown = description if count == 1 else f"{description} (#{count} on the line)"
        code = lines[line - 1].strip()
        found.append(Mutant(module, index, line, code, shown, scopes.get(id(node), "")))
    return found, source


def mutated_source(mutant: Mutant, source: str) -> str:
    tree = ast.parse(source)
    node, kind, _ = _points(tree)[mutant.index]
    mutated = _Mutator(node, kind).visit(tree)
    return ast.unparse(ast.fix_missing_locations(mutated))


def _tree_files() -> list[str]:
    """Every file of the working tree git knows of or would add (tracked or new, not ignored):
    a test may read any of them (docs/CERTIFICATES.md, the template, an event)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode("utf-8")  # fmt: skip
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def _copy_tree(destination: Path, files: Sequence[str]) -> None:
    for name in files:
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination / name)


def _pytest(workdir: Path, tests: Sequence[str], *extra: str) -> list[str]:
    """The fast tests ``tests`` as a command run in ``workdir`` (first failure ends it)."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *extra]
    present = [name for name in tests if (workdir / name).exists()]
    return [*command, "-m", SELECTION, "-o", "addopts=", *present]


def _environment(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(workdir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "CI": "",  # a skip is a skip here: the mutant is judged on what ran
    }


def baseline_failure(workdir: Path, modules: Iterable[str], workers: int) -> str | None:
    """What fails when no mutant is in place (None: all pass). A test that fails on the tree
    as it is would 'kill' every mutant it reaches, and flatter the score."""
    tests = sorted({name for module in modules for name in MODULES[module]})
    result = subprocess.run(
        _pytest(workdir, tests, "-n", str(workers)),
        cwd=workdir, env=_environment(workdir), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode == 0:
        return None
    return "\n".join(result.stdout.strip().splitlines()[-15:])


def _run(workdir: Path, mutant: Mutant, source: str) -> tuple[Mutant, str, float]:
    """Run one mutant's tests in ``workdir``: 'killed', 'survived' or 'timeout'."""
    target = workdir / "handler" / f"{mutant.module}.py"
    target.write_text(mutated_source(mutant, source), encoding="utf-8")
    command = _pytest(workdir, MODULES[mutant.module])
    started = time.monotonic()
    try:
        result = subprocess.run(
            command,
            cwd=workdir,
            env=_environment(workdir),
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
        verdict = "survived" if result.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        verdict = "timeout"
    finally:
        target.write_text(source, encoding="utf-8")
    return mutant, verdict, time.monotonic() - started


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--per-module", type=int, default=20, help="mutants sampled per module")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--seed", type=parse_seeds, help="seed(s) to use: 7 or 7,8,9")
    chosen.add_argument("--seeds", type=int, default=1, help="how many fresh seeds to draw")
    parser.add_argument("--modules", nargs="*", default=list(MODULES))
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    entries, tuning = (
        load_equivalents(EQUIVALENTS.read_text(encoding="utf-8"))
        if EQUIVALENTS.exists()
        else ([], set())
    )
    seeds = args.seed or fresh_seeds(args.seeds, tuning)
    fresh = [seed for seed in seeds if seed not in tuning]
    print(
        f"mutation: seeds {', '.join(map(str, seeds))} "
        f"({len(fresh)} fresh, {len(seeds) - len(fresh)} used to write the tests); "
        f"rerun with --seed {','.join(map(str, seeds))}",
        file=sys.stderr,
    )
    every_point: dict[str, list[Mutant]] = {}
    sources: dict[str, str] = {}
    for module in MODULES:
        every_point[module], sources[module] = mutants_of(module)
    problems = equivalent_problems(entries, every_point)
    drawn: dict[int, dict[str, list[Mutant]]] = {
        seed: {m: sample(every_point[m], args.per_module, seed, m) for m in args.modules}
        for seed in seeds
    }
    distinct = sorted(
        {m for per_seed in drawn.values() for ms in per_seed.values() for m in ms},
        key=lambda m: (m.module, m.index),
    )
    print(
        f"mutation: {len(distinct)} distinct mutants over {len(args.modules)} modules, "
        f"{args.workers} workers",
        file=sys.stderr,
    )
    started = time.monotonic()
    verdicts = _run_all([(m, sources[m.module]) for m in distinct], args.workers)
    elapsed = time.monotonic() - started
    report, gaps = _report(
        drawn, verdicts, {m: len(every_point[m]) for m in args.modules}, entries, args, elapsed,
        seeds, tuning, problems,
    )  # fmt: skip
    print(report)
    missing = [m for m in distinct if verdicts[m] == "survived" and not reason_for(m, entries)]
    if missing:
        print("\nSurvivors without a reason, as scripts/mutation_equivalents.toml entries:")
        for mutant in missing:
            print(
                f"\n[[equivalent]]\nmodule = {mutant.module!r}\ncode = {_toml(mutant.code)}\n"
                f"mutation = {_toml(mutant.description)}\nscope = {_toml(mutant.scope)}\n"
                'reason = ""'
            )
    if args.no_write or set(args.modules) != set(MODULES):
        print(
            "docs/MUTATION.md left as it was (a run over every module rewrites it)", file=sys.stderr
        )
    else:
        REPORT.write_text(report, encoding="utf-8")
        print(f"wrote {REPORT.relative_to(ROOT)}", file=sys.stderr)
    return 1 if gaps or problems else 0


def _run_all(chosen: list[tuple[Mutant, str]], workers: int) -> dict[Mutant, str]:
    """Each mutant's verdict, ``workers`` at a time, each worker in its own copy of the tree;
    none at all unless the unmutated tree passes the same tests first."""
    verdicts: dict[Mutant, str] = {}
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        files = _tree_files()
        workdirs = []
        for number in range(workers):
            workdir = Path(tmp) / f"w{number}"
            _copy_tree(workdir, files)
            workdirs.append(workdir)
        modules = sorted({mutant.module for mutant, _ in chosen})
        failure = baseline_failure(workdirs[0], modules, workers)
        if failure is not None:
            raise SystemExit(
                "mutation: the tests fail with no mutant in place, so every verdict would be "
                f"a false kill; fix them first:\n{failure}"
            )
        print("mutation: the unmutated tree passes its tests", file=sys.stderr, flush=True)
        pending = list(chosen)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
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
                    verdicts[mutant] = verdict
                    print(
                        f"  {mutant.key}: {verdict} ({seconds:.0f} s)", file=sys.stderr, flush=True
                    )
    return verdicts


def _toml(text: str) -> str:
    import json

    return json.dumps(text)  # a TOML basic string is JSON's string syntax for these


@dataclass(frozen=True)
class Score:
    """One module's figures over some mutants."""

    tried: int
    killed: int
    equivalent: int
    gaps: int

    @property
    def rate(self) -> str:
        """Killed of non-equivalent, rounded down: 94.6 % shows as 94 %, never as 95 %."""
        relevant = self.tried - self.equivalent
        return f"{100 * self.killed // relevant} %" if relevant else "-"


def score(
    mutants: Iterable[Mutant], verdicts: dict[Mutant, str], entries: Sequence[Equivalent]
) -> Score:
    mine = list(mutants)
    killed = sum(1 for m in mine if verdicts[m] in ("killed", "timeout"))
    survived = [m for m in mine if verdicts[m] == "survived"]
    equivalent = sum(1 for m in survived if reason_for(m, entries))
    return Score(len(mine), killed, equivalent, len(survived) - equivalent)


def _report(
    drawn: dict[int, dict[str, list[Mutant]]],
    verdicts: dict[Mutant, str],
    totals: dict[str, int],
    entries: Sequence[Equivalent],
    args: argparse.Namespace,
    elapsed: float,
    seeds: Sequence[int],
    tuning: set[int],
    problems: Sequence[str],
) -> tuple[str, int]:
    named = ", ".join(
        f"{seed}{' (used to write the tests)' if seed in tuning else ''}" for seed in seeds
    )
    lines = [
        "# Mutation testing",
        "",
        f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `make mutation` in "
        f"{elapsed / 60:.1f} minutes ({args.workers} workers, seeds {named}; up to "
        f"{args.per_module} mutants per module and seed). How mutants are made and chosen: the "
        "docstring of scripts/mutation.py. A survivor is either equivalent (the reason is given, "
        "from scripts/mutation_equivalents.toml) or a gap in the tests (the run fails). Rates "
        "are rounded down.",
        "",
        "## Over every seed (distinct mutants)",
        "",
        "| module | mutation points | tried | killed | survived: equivalent | survived: gap "
        "| killed of non-equivalent |",
        "|---|---|---|---|---|---|---|",
    ]
    overall: dict[str, list[Mutant]] = {}
    for per_seed in drawn.values():
        for module, mutants in per_seed.items():
            overall.setdefault(module, [])
            overall[module] += [m for m in mutants if m not in overall[module]]
    for module in sorted(totals):
        s = score(overall.get(module, []), verdicts, entries)
        lines.append(
            f"| {module} | {totals[module]} | {s.tried} | {s.killed} | {s.equivalent} | "
            f"{s.gaps} | {s.rate} |"
        )
    everything = score([m for ms in overall.values() for m in ms], verdicts, entries)
    lines.append(
        f"| **all** | {sum(totals.values())} | {everything.tried} | {everything.killed} | "
        f"{everything.equivalent} | {everything.gaps} | {everything.rate} |"
    )
    lines += [
        "",
        "## Per seed",
        "",
        "| seed | module | tried | killed | survived: equivalent | survived: gap "
        "| killed of non-equivalent |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed in seeds:
        for module in sorted(drawn[seed]):
            s = score(drawn[seed][module], verdicts, entries)
            lines.append(
                f"| {seed} | {module} | {s.tried} | {s.killed} | {s.equivalent} | {s.gaps} "
                f"| {s.rate} |"
            )
    lines += ["", "## Survivors", ""]
    survivors = []
    for module in sorted(overall):
        for m in overall[module]:
            if verdicts[m] != "survived":
                continue
            reason = reason_for(m, entries)
            where = f"`handler/{module}.py:{m.line}` ({m.scope or 'module'}) {m.description}"
            survivors.append(
                f"- {where}: {reason}" if reason else f"- {where}: **not killed: a gap**"
            )
    lines += survivors or ["None."]
    if problems:
        lines += ["", "## Equivalents list problems", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n", everything.gaps


if __name__ == "__main__":
    sys.exit(main())
