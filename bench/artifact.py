"""Artifact size: the zip Lambda is given, and how much of it is the handler.

The function ships as a zip for arm64 on Python 3.13 without boto3 (the Lambda runtime has
it). It is built as the project builds it (scripts/build_artifact.sh; a pip recipe where that
script is absent) and zipped at deflate -9: the bytes Lambda stores, downloads and unpacks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from report import ROOT, table


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
                "cryptography; cp -r handler DIR"
            )
            pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run(
                [*pip, "--platform", "manylinux2014_aarch64", "--implementation", "cp",
                 "--python-version", "3.13", "--only-binary=:all:", "--no-compile",
                 "--target", str(target), "cryptography"],
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
