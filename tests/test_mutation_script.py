"""scripts/mutation.py's mechanics: fresh seeds, per-seed samples, seed-independent equivalents.

No mutant is run here (that is ``make mutation``); these check how mutants are drawn, matched
against scripts/mutation_equivalents.toml and counted in the report.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation", ROOT / "scripts" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


mutation = _load()
Mutant = mutation.Mutant
Equivalent = mutation.Equivalent


def test_seeds_are_one_or_a_comma_list() -> None:
    assert mutation.parse_seeds("7") == [7]
    assert mutation.parse_seeds("7,8, 9") == [7, 8, 9]
    with pytest.raises(ValueError, match="no seed"):
        mutation.parse_seeds(",")


def test_without_a_seed_a_run_draws_fresh_ones_and_never_a_tuning_seed() -> None:
    args = mutation._arguments([])
    assert args.seed is None and args.seeds == 1  # main() then draws one fresh seed
    assert mutation._arguments(["--seeds", "3"]).seeds == 3
    assert mutation._arguments(["--seed", "4,5"]).seed == [4, 5]
    with pytest.raises(SystemExit):
        mutation._arguments(["--seed", "4", "--seeds", "2"])
    draw = random.Random(1)
    first = mutation.fresh_seeds(3, set(), random.Random(1))
    avoided = mutation.fresh_seeds(3, {first[0]}, draw)
    assert len(set(first)) == 3 and first[0] not in avoided
    # from the system's entropy by default: two runs do not draw the same seed
    assert mutation.fresh_seeds(1, set()) != mutation.fresh_seeds(1, set())


def _mutants(module: str, count: int) -> list[Mutant]:
    return [Mutant(module, i, i + 1, f"x = {i}", f"{i} -> {i + 1}") for i in range(count)]


def test_a_seed_draws_the_same_sample_of_a_module_whatever_else_runs() -> None:
    """Per module and seed: a run restricted to one module sees what a full run would."""
    bundle = _mutants("bundle", 50)
    one = mutation.sample(bundle, 10, 123, "bundle")
    assert one == mutation.sample(list(reversed(bundle)), 10, 123, "bundle")
    assert len(one) == 10 and one == sorted(one, key=lambda m: m.index)
    assert one != mutation.sample(bundle, 10, 124, "bundle")
    assert mutation.sample(bundle, 100, 1, "bundle") == bundle  # fewer points than asked


def test_an_equivalent_matches_by_code_and_mutation_and_its_scope_when_named() -> None:
    a = Mutant("bundle", 1, 10, "@dataclass(frozen=True)", "True -> False", "Plan")
    b = Mutant("bundle", 9, 90, "@dataclass(frozen=True)", "True -> False", "Write")
    scoped = Equivalent("bundle", "@dataclass(frozen=True)", "True -> False", "plan", "Plan")
    loose = Equivalent("bundle", "@dataclass(frozen=True)", "True -> False", "any")
    assert scoped.matches(a) and not scoped.matches(b)
    assert loose.matches(a) and loose.matches(b)
    assert mutation.reason_for(b, [scoped]) is None
    assert mutation.reason_for(a, [loose, scoped]) == "plan"  # the scoped entry wins
    # the line number and the index (what a seed's draw depends on) play no part
    moved = Mutant("bundle", 40, 400, a.code, a.description, "Plan")
    assert scoped.matches(moved)


def test_stale_ambiguous_reasonless_and_repeated_entries_are_problems_whatever_the_sample() -> None:
    a = Mutant("bundle", 1, 10, "@dataclass(frozen=True)", "True -> False", "Plan")
    b = Mutant("bundle", 9, 90, "@dataclass(frozen=True)", "True -> False", "Write")
    c = Mutant("bundle", 5, 50, "x = 1", "1 -> 2", "f")
    entries = [
        Equivalent("bundle", a.code, a.description, "frozen"),  # two scopes, none named
        Equivalent("bundle", "gone = 1", "1 -> 2", "was here"),
        Equivalent("bundle", c.code, c.description, " "),
        Equivalent("bundle", a.code, a.description, "plan", "Plan"),
        Equivalent("other", "y", "z", "a module this run does not enumerate"),
        Equivalent("bundle", a.code, a.description, "plan again", "Plan"),
    ]
    problems = mutation.equivalent_problems(entries, {"bundle": [a, b, c]})
    assert problems == [
        "ambiguous, add scope = one of ['Plan', 'Write']: bundle: "
        "'@dataclass(frozen=True)' True -> False",
        "stale (no such mutation point): bundle: 'gone = 1' 1 -> 2",
        "no reason: bundle: 'x = 1' 1 -> 2",
        "repeated: bundle: '@dataclass(frozen=True)' True -> False",
    ]


def test_scopes_name_the_enclosing_class_and_function() -> None:
    tree = ast.parse(
        "@dataclass(frozen='F')\nclass A:\n    def f(self):\n        return 'R'\nx = 'X'\n"
    )
    scopes = mutation._scopes(tree)
    by_value = {
        node.value: scopes[id(node)] for node in ast.walk(tree) if isinstance(node, ast.Constant)
    }
    assert by_value == {"F": "A", "R": "A.f", "X": ""}


def test_the_equivalents_file_matches_the_code_as_it_stands() -> None:
    """Every entry names one real mutation point (or one scope of it) and says why."""
    entries, tuning = mutation.load_equivalents(mutation.EQUIVALENTS.read_text(encoding="utf-8"))
    every = {module: mutation.mutants_of(module)[0] for module in mutation.MODULES}
    assert mutation.equivalent_problems(entries, every) == []
    assert 2026 in tuning  # the seed docs/MUTATION.md's first figures were fitted to


def test_the_report_counts_each_seed_and_distinct_mutants_overall() -> None:
    m1, m2, m3, m4 = _mutants("bundle", 4)
    verdicts = {m1: "killed", m2: "survived", m3: "survived", m4: "timeout"}
    entries = [Equivalent("bundle", m3.code, m3.description, "the same either way")]
    drawn = {11: {"bundle": [m1, m2, m3]}, 12: {"bundle": [m1, m4]}}
    args = argparse.Namespace(workers=2, per_module=3)
    report, gaps = mutation._report(
        drawn, verdicts, {"bundle": 4}, entries, args, 60.0, [11, 12], {12}, []
    )
    assert gaps == 1  # m2, counted once though two seeds ran
    assert "seeds 11, 12 (used to write the tests)" in report
    # m1 drawn twice, counted once; 2 of 3 is 66.7 %, shown rounded down
    assert "| bundle | 4 | 4 | 2 | 1 | 1 | 66 % |" in report
    assert "| 11 | bundle | 3 | 1 | 1 | 1 | 50 % |" in report
    assert "| 12 | bundle | 2 | 2 | 0 | 0 | 100 % |" in report
    assert "**not killed: a gap**" in report and "the same either way" in report


def test_a_rate_is_rounded_down_so_a_target_is_never_met_by_rounding() -> None:
    Score = mutation.Score
    assert Score(tried=1000, killed=946, equivalent=0, gaps=54).rate == "94 %"  # 94.6 %
    assert Score(tried=1001, killed=1000, equivalent=0, gaps=1).rate == "99 %"  # 99.9 %
    assert Score(tried=22, killed=20, equivalent=2, gaps=0).rate == "100 %"
    assert Score(tried=3, killed=0, equivalent=3, gaps=0).rate == "-"


def test_a_worker_copy_holds_what_the_tests_read() -> None:
    """tests/test_certificate_profile.py reads docs/CERTIFICATES.md: a copy without docs made
    every mutant that reached it 'killed'."""
    files = mutation._tree_files()
    for needed in ("docs/CERTIFICATES.md", "template.yaml", "handler/app.py", "README.md"):
        assert needed in files
    assert not any(name.startswith((".venv/", ".git/")) for name in files)


def test_no_mutant_runs_on_a_tree_whose_tests_fail_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(mutation.MODULES, "toy", ["tests/test_toy.py"])
    (tmp_path / "tests").mkdir()
    toy = tmp_path / "tests" / "test_toy.py"
    toy.write_text("def test_fine() -> None:\n    assert True\n")
    assert mutation.baseline_failure(tmp_path, ["toy"], 1) is None
    toy.write_text("def test_reads_a_missing_doc() -> None:\n    open('docs/GONE.md')\n")
    failure = mutation.baseline_failure(tmp_path, ["toy"], 1)
    assert failure is not None and "1 failed" in failure
