"""The cache of prepared trees behind devkit/arm64.py (the arm64 root filesystem, the runtime's
boto3): built once, reused by recipe, never half-built, one builder when two runs race."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devkit.arm64 import STAMP, _cached


def _builder(
    calls: list[str], *, fail: bool = False, pause: float = 0.0
) -> Callable[[Path], dict[str, str]]:
    def build(work: Path) -> dict[str, str]:
        calls.append(work.name)
        work.mkdir(parents=True)
        (work / "usr").mkdir()
        time.sleep(pause)
        if fail:
            raise RuntimeError("the archive went away")
        return {"python": "3.13.5"}

    return build


def test_built_once_then_reused_until_the_recipe_changes(tmp_path: Path) -> None:
    path = tmp_path / "arm64-rootfs"
    calls: list[str] = []
    stamp, built, _ = _cached(path, "recipe 1", _builder(calls), rebuild=False)
    assert built and stamp["python"] == "3.13.5" and (path / "usr").is_dir()
    assert json.loads((path / STAMP).read_text(encoding="utf-8")) == stamp
    _, built, seconds = _cached(path, "recipe 1", _builder(calls), rebuild=False)
    assert not built and seconds == 0.0 and len(calls) == 1
    _, built, _ = _cached(path, "recipe 2", _builder(calls), rebuild=False)
    assert built and len(calls) == 2
    _, built, _ = _cached(path, "recipe 2", _builder(calls), rebuild=True)
    assert built and len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arm64-rootfs", "arm64-rootfs.lock"]


def test_a_failed_build_leaves_nothing_that_looks_ready(tmp_path: Path) -> None:
    path = tmp_path / "arm64-rootfs"
    with pytest.raises(RuntimeError, match="archive went away"):
        _cached(path, "recipe", _builder([], fail=True), rebuild=False)
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["arm64-rootfs.lock"]  # no .building-* left
    calls: list[str] = []
    _, built, _ = _cached(path, "recipe", _builder(calls), rebuild=False)
    assert built and calls


def test_two_runs_that_race_build_once(tmp_path: Path) -> None:
    path = tmp_path / "arm64-rootfs"
    calls: list[str] = []
    results: list[bool] = []

    def one_run() -> None:
        _, built, _ = _cached(path, "recipe", _builder(calls, pause=0.5), rebuild=False)
        results.append(built)

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=30)
    assert len(calls) == 1, calls
    assert sorted(results) == [False, True]
    assert (path / "usr").is_dir()
