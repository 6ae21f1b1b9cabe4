"""Long phases speak: devkit.progress's ticker; make invoke's stdout is the response alone."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devkit import invoke, progress, runtime_image

ROOT = Path(__file__).resolve().parent.parent


def test_the_ticker_speaks_within_the_interval_and_stops_with_the_work() -> None:
    lines: list[tuple[float, str]] = []
    started = time.monotonic()
    with progress.ticking(lambda text: lines.append((time.monotonic(), text)), "work", 0.1):
        time.sleep(0.55)
    ended = time.monotonic()
    assert len(lines) >= 3, lines
    assert lines[0][0] - started < 0.3  # the first line within the interval (and some slack)
    assert all(b[0] - a[0] < 0.3 for a, b in itertools.pairwise(lines))
    assert lines[0][1] == "work: still running (0 s)"
    assert all(moment <= ended for moment, _ in lines)
    count = len(lines)
    time.sleep(0.35)
    assert len(lines) == count  # nothing after the work ended


def test_the_ticker_stops_when_the_work_raises() -> None:
    lines: list[str] = []

    def work() -> None:
        with progress.ticking(lines.append, "work", 0.05):
            time.sleep(0.12)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        work()
    count = len(lines)
    assert count >= 1
    time.sleep(0.2)
    assert len(lines) == count


def test_run_passes_the_exit_code_through_and_logs_the_output(tmp_path: Path) -> None:
    log = tmp_path / "install.log"
    lines: list[str] = []
    code = progress.run(
        ["sh", "-c", "echo from-the-command; sleep 0.35; exit 3"],
        "installing",
        every=0.1,
        log=log,
        note=lines.append,
    )
    assert code == 3
    assert "from-the-command" in log.read_text()
    assert len(lines) >= 2 and all(line.startswith("installing: still running") for line in lines)
    assert progress.run(["true"], "quick", every=5, note=lines.append) == 0


def test_the_command_line_as_make_runs_it(tmp_path: Path) -> None:
    log = tmp_path / "install.log"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devkit.progress",
            "--every",
            "0.2",
            "--log",
            str(log),
            "make: installing",
            "--",
            "sh",
            "-c",
            "echo pip-says; sleep 0.7; exit 5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 5
    assert result.stdout == ""
    ticks = [line for line in result.stderr.splitlines() if line]
    assert len(ticks) >= 2 and all(t.startswith("make: installing: still running (") for t in ticks)
    assert log.read_text() == "pip-says\n"


def test_an_image_build_step_speaks_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """debootstrap, pip and compileall run through runtime_image._run, which ticks."""
    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.1)
    lines: list[str] = []
    output = runtime_image._run(
        "debootstrap", ["sh", "-c", "sleep 0.45; echo done"], note=lines.append
    )
    assert output == "done\n"
    assert len(lines) >= 2
    assert all(line.startswith("runtime image: debootstrap: still running") for line in lines)
    with pytest.raises(runtime_image.ImageBuildError, match="pip install failed"):
        runtime_image._run("pip install", ["sh", "-c", "exit 1"], note=lines.append)


def test_each_sam_invoke_speaks_while_it_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The wiring only: a stand-in for the SAM CLI that takes a while and sends nothing (the
    real one runs in tests/test_sam_local.py, where a Docker engine is)."""
    from dataclasses import dataclass

    from devkit import sam_local
    from devkit.receiver import response_receiver
    from devkit.sam_cli import SamRun

    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.1)

    @dataclass
    class SlowSam:
        def run(self, arguments: list[str], **_: object) -> SamRun:
            time.sleep(0.35)
            return SamRun(0, "", 0.35)

    lines: list[str] = []
    with response_receiver() as receiver:
        function = sam_local.LocalLambda(
            SlowSam(),  # type: ignore[arg-type]
            receiver,
            "http://127.0.0.1:9",
            "x86_64",
            "img",
            "debian (reused)",
            None,
            "SAM CLI",
            tmp_path,
            tmp_path / "build",
            0.0,
            (),
        )
        steps = sam_local._invoke_all(function, lines.append)
    assert [step.name for step in steps] == list(sam_local.STEPS)
    for name in sam_local.STEPS:
        ticks = [line for line in lines if line.startswith(f"sam local invoke ({name};")]
        assert len(ticks) >= 2, lines
        assert "still running" in ticks[0]


@pytest.mark.slow  # make, then the handler against an embedded endpoint in a subprocess
@pytest.mark.parametrize("silent", [True, False], ids=["make -s invoke", "make invoke"])
def test_make_invoke_prints_only_the_response_json(silent: bool, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [
            "make",
            *(["-s"] if silent else []),
            "--no-print-directory",
            "invoke",
            "EVENT=events/getter.json",
            f"VENV={sys.prefix}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    response = json.loads(result.stdout)
    assert response["Status"] == "SUCCESS"
    assert response["Data"] == {"Value": invoke.MASK}
    assert "invoke: embedded SSM endpoint" in result.stderr  # the notes are on stderr
