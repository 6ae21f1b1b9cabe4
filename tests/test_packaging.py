"""What ``pip install`` of docker-tls gives a user (issue 20): the CLI in one namespaced
package, nothing that imports a development-only dependency.

The wheel is built from a copy of the checkout (``pip wheel`` writes ``build/`` and an
``egg-info`` beside the sources), installed with its run-time dependencies into a fresh
virtualenv, and run from a directory outside the repository. Those tests are slow: pip
builds, and the dependencies come from the pip cache or PyPI. The fast ones check the
checkout's side of :mod:`docker_tls_cli.lambda_code`.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

import handler.bundle
import handler.store
from docker_tls_cli import lambda_code, main

ROOT = Path(__file__).resolve().parent.parent
#: The only top-level package the wheel may install.
PACKAGE = "docker_tls_cli"
#: What the dev extras bring (pyproject.toml), by import name, and the checkout-only packages.
DEVELOPMENT_ONLY = [
    "moto",
    "pytest",
    "xdist",
    "hypothesis",
    "mypy",
    "ruff",
    "cfnlint",
    "mypy_boto3_ssm",
    "devkit",
]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

#: Imports every module the wheel installed (argv[1]: their names, JSON), then prints where each
#: came from and which modules of interest ended up in sys.modules.
IMPORT_ALL = """
import importlib, json, sys
names = json.loads(sys.argv[1])
files = {name: importlib.import_module(name).__file__ for name in names}
shim = sys.modules.get("docker_tls_cli.lambda_code")
print(json.dumps({
    "files": files,
    "loaded": sorted({name.split(".")[0] for name in sys.modules}),
    "package": shim and shim.PACKAGE,
    "checkout": shim and shim.CHECKOUT and str(shim.CHECKOUT),
}))
"""


def _run(command: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", ".aws-sam", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(work / "dist"),
            str(source),
        ],
        cwd=work,
    )
    assert built.returncode == 0, built.stderr
    (found,) = (work / "dist").glob("docker_tls-*.whl")
    return found


def _module_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        files = [name for name in archive.namelist() if name.endswith(".py")]
    return sorted(
        name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for name in files
        if not name.endswith("__main__.py")
    )


@pytest.mark.slow
def test_the_wheel_holds_one_namespaced_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [name for name in names if name.endswith(".dist-info/top_level.txt")]
        declared = archive.read(top_level).decode().split()
    assert declared == [PACKAGE]
    outside = {name.split("/")[0] for name in names if not name.startswith(f"{PACKAGE}/")}
    assert outside == {f"docker_tls-{VERSION}.dist-info"}
    # The Lambda's code is in it, under the namespaced name, module for module.
    shipped = {name.removeprefix(f"{PACKAGE}/_handler/") for name in names if "/_handler/" in name}
    assert shipped == {path.name for path in (ROOT / "handler").glob("*.py")}


@pytest.mark.slow
def test_an_installed_cli_runs_and_imports_nothing_of_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = _run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    docker_tls = str(venv / "bin" / "docker-tls")

    version = _run([docker_tls, "--version"], cwd=elsewhere, timeout=60)
    assert (version.returncode, version.stdout.strip()) == (0, f"docker-tls {VERSION}"), (
        version.stderr
    )
    helped = _run([docker_tls, "plan", "--help"], cwd=elsewhere, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "--rack" in helped.stdout

    # --local needs the checkout's devkit (and moto): one line saying what to do instead.
    local = _run([docker_tls, "inspect", "--rack", "r", "--local"], cwd=elsewhere, timeout=60)
    assert local.returncode != 0
    assert "Traceback" not in local.stderr
    (line,) = local.stderr.strip().splitlines()
    assert "source checkout" in line and "leave out --local" in line, line

    # Every module the wheel installed imports in a virtualenv without the dev extras, from
    # the virtualenv, not the checkout.
    names = _module_names(wheel)
    assert f"{PACKAGE}._handler.app" in names
    imported = _run(
        [str(venv / "bin" / "python"), "-c", IMPORT_ALL, json.dumps(names)], cwd=elsewhere
    )
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert report["package"] == f"{PACKAGE}._handler"
    assert report["checkout"] is None
    assert all(not Path(file).is_relative_to(ROOT) for file in report["files"].values())
    assert "handler" not in report["loaded"]


@pytest.mark.slow
def test_no_installed_module_imports_a_development_dependency(wheel: Path, tmp_path: Path) -> None:
    """The same imports beside the development virtualenv's packages, where moto, pytest and
    the rest are installed and importable: none of them is imported. (The .pth file that puts
    the checkout on that virtualenv's path is not read: ``-S``, and sys.path set by hand.)"""
    target = tmp_path / "target"
    installed = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr
    development = sysconfig.get_path("purelib")
    assert (Path(development) / "moto").is_dir()  # what makes this check mean something
    script = f"import sys; sys.path[:0] = {[str(target), development]!r}\n" + IMPORT_ALL
    imported = _run(
        [sys.executable, "-I", "-S", "-c", script, json.dumps(_module_names(wheel))],
        cwd=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert all(Path(file).is_relative_to(target) for file in report["files"].values())
    assert sorted(set(report["loaded"]) & {*DEVELOPMENT_ONLY, "handler"}) == []


def test_from_the_checkout_the_cli_uses_the_checkouts_handler() -> None:
    """The tests and the CLI share module objects: an error class the store raises is the
    one the CLI catches, a patched ParameterStore is the one the CLI builds."""
    assert lambda_code.PACKAGE == "handler"
    assert lambda_code.CHECKOUT == ROOT
    assert lambda_code.StoreError is handler.store.StoreError
    assert lambda_code.ParameterStore is handler.store.ParameterStore
    assert lambda_code.plan is handler.bundle.plan


def test_local_without_a_checkout_is_one_line_saying_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # (The module: docker_tls_cli.main is also the name of the function the package exports.)
    monkeypatch.setattr(importlib.import_module("docker_tls_cli.main"), "CHECKOUT", None)
    assert main(["plan", "--rack", "r", "--local"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert "source checkout" in line and "leave out --local" in line, line
