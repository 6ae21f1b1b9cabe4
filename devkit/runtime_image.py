"""A Lambda-like Python 3.13 runtime image, built from Debian packages where no registry is.

``sam local invoke`` runs a function in ``public.ecr.aws/lambda/python:3.13-<arch>`` plus SAM's
runtime interface emulator. Where that registry cannot be reached (these machines, CI), this
builds a stand-in the same way the base image is laid out, from what is reachable (Debian's
archive and PyPI):

* Debian trixie ``minbase`` (its ``python3`` is 3.13) via ``debootstrap``, for the host's
  architecture;
* ``/var/lang``: a venv over that Python, holding ``awslambdaric`` (the runtime client AWS's
  Python images use) and ``boto3``, byte-compiled as the base image ships them;
* ``/var/runtime/bootstrap`` starting ``awslambdaric`` on ``$_HANDLER``, ``/var/task`` as the
  working directory, and the base image's environment (``LAMBDA_TASK_ROOT``, ``PATH``, ...).

What differs from AWS's image: Debian instead of Amazon Linux 2023, and whichever boto3 PyPI
has today instead of the runtime's pinned one. cryptography brings its own OpenSSL, so the
function's crypto is the same. The image is tagged ``docker-tls/lambda-python:3.13-<arch>`` (a
local name, never AWS's) and labelled with a hash of this file: it is reused until the recipe
changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devkit.docker_engine import Engine, EngineError
from devkit.progress import ticking

REPOSITORY = "docker-tls/lambda-python"
PYTHON_VERSION = "3.13"
DEBIAN_SUITE = "trixie"  # the Debian release whose python3 is 3.13
DEFAULT_MIRROR = "http://deb.debian.org/debian"
RECIPE_LABEL = "org.docker-tls.recipe"
_DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
_WHEEL_PLATFORM = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
SITE_PACKAGES = f"/var/lang/lib/python{PYTHON_VERSION}/site-packages"

# What the runtime runs: awslambdaric takes the handler name and reads AWS_LAMBDA_RUNTIME_API
# (set by the emulator SAM adds, or by Lambda itself).
_BOOTSTRAP = """#!/bin/sh
exec /var/lang/bin/python3 -m awslambdaric "$_HANDLER"
"""
# The base image's entry point takes the handler as its argument. SAM replaces it with its own
# emulator; without one (a plain `docker run`) there is no runtime API to serve.
_ENTRYPOINT = """#!/bin/sh
if [ $# -ne 1 ]; then
  echo "usage: /lambda-entrypoint.sh HANDLER" >&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  echo "no AWS_LAMBDA_RUNTIME_API: run this image through sam local invoke" >&2
  exit 142
fi
exec /var/runtime/bootstrap
"""
_IMAGE_SETTINGS = (
    "ENV LANG=C.UTF-8",
    "ENV TZ=:/etc/localtime",
    "ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin:/opt/bin",
    "ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib"
    ":/var/task:/var/task/lib:/opt/lib",
    "ENV LAMBDA_TASK_ROOT=/var/task",
    "ENV LAMBDA_RUNTIME_DIR=/var/runtime",
    "WORKDIR /var/task",
    'ENTRYPOINT ["/lambda-entrypoint.sh"]',
)


class ImageBuildError(RuntimeError):
    """The stand-in image could not be built; the message says which step and why."""


@dataclass(frozen=True)
class RuntimeImage:
    """A runtime image ready on the engine."""

    name: str
    built: bool  # False: an earlier run's image was reused
    seconds: float  # spent building (0 when reused)
    size_bytes: int
    versions: dict[str, str]  # python, awslambdaric, boto3, debian


def image_name(architecture: str) -> str:
    return f"{REPOSITORY}:{PYTHON_VERSION}-{architecture}"


def recipe_hash() -> str:
    """Changes whenever this recipe does, so a stale image is rebuilt, not reused."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def host_architecture() -> str:
    """The Lambda name of this machine's architecture (``x86_64`` or ``arm64``)."""
    machine = os.uname().machine
    architecture = {"aarch64": "arm64", "arm64": "arm64", "x86_64": "x86_64"}.get(machine)
    if architecture is None:
        raise ImageBuildError(f"Lambda runs x86_64 or arm64, not {machine}")
    return architecture


def debian_mirror() -> str:
    """The Debian archive apt already uses here (``DEBIAN_MIRROR`` overrides it)."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    pattern = re.compile(r"(?m)^(?:deb|URIs:)\s+(?:\[[^\]]*\]\s+)?(https?://\S+/debian)/?\s")
    for source in sources:
        try:
            found = pattern.search(source.read_text(encoding="utf-8") + "\n")
        except OSError:
            continue
        if found:
            return found.group(1)
    return DEFAULT_MIRROR


def ensure_image(
    engine: Engine,
    architecture: str,
    *,
    rebuild: bool = False,
    note: Callable[[str], None] = lambda _: None,
) -> RuntimeImage:
    """The stand-in image for ``architecture`` on ``engine``: reused when an image of this
    recipe is there, else built (root, ``debootstrap`` and the package archives needed)."""
    name = image_name(architecture)
    labels = engine.image_labels(name)
    if labels is not None and labels.get(RECIPE_LABEL) == recipe_hash() and not rebuild:
        note(f"runtime image {name}: reusing the one built earlier")
        versions = json.loads(labels.get("org.docker-tls.versions", "{}"))
        return RuntimeImage(name, False, 0.0, engine.image_size(name), versions)
    if architecture != host_architecture():
        raise ImageBuildError(
            f"a {architecture} image cannot be built on this {host_architecture()} machine"
        )
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "building the runtime image needs root and debootstrap (apt-get install debootstrap)"
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lambda-rootfs-") as tmp:
        root = Path(tmp) / "root"
        versions = _build_root(root, architecture, note)
        note(f"runtime image {name}: importing into Docker")
        changes = [
            *_IMAGE_SETTINGS,
            f"LABEL {RECIPE_LABEL}={recipe_hash()}",
            f"LABEL org.docker-tls.versions={json.dumps(json.dumps(versions, sort_keys=True))}",
        ]
        arguments = [f"--change={change}" for change in changes]
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            assert tar.stdout is not None
            with ticking(note, f"runtime image {name}: docker import"):
                engine.docker("import", *arguments, "-", name, stdin=tar.stdout.fileno())
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait()
    # SAM layers its emulator onto the base as <repository>:rapid-<arch> and reuses that
    # layer while it exists: drop it so the next invoke layers onto the new base.
    with contextlib.suppress(EngineError):  # not there yet
        engine.docker("image", "rm", f"{REPOSITORY}:rapid-{architecture}")
    seconds = time.monotonic() - started
    note(f"runtime image {name}: built in {seconds:.0f} s")
    return RuntimeImage(name, True, seconds, engine.image_size(name), versions)


def _run(
    step: str,
    command: list[str],
    timeout: float = 900,
    note: Callable[[str], None] = lambda _: None,
) -> str:
    """Run one build step, saying every 10 s that it still runs (debootstrap alone takes a
    minute or more)."""
    with ticking(note, f"runtime image: {step}"):
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-1500:]
        raise ImageBuildError(f"{step} failed ({' '.join(command[:3])} ...):\n{tail}")
    return result.stdout


def _build_root(root: Path, architecture: str, note: Callable[[str], None]) -> dict[str, str]:
    mirror = debian_mirror()
    note(f"runtime image: debootstrap {DEBIAN_SUITE} ({_DEBIAN_ARCH[architecture]}) from {mirror}")
    _run(
        "debootstrap",
        [
            "debootstrap",
            "--variant=minbase",
            f"--arch={_DEBIAN_ARCH[architecture]}",
            "--include=python3,python3-venv,ca-certificates",
            DEBIAN_SUITE,
            str(root),
            mirror,
        ],
        note=note,
    )
    python = _run("python3 version", ["chroot", str(root), "python3", "-c", _VERSION]).strip()
    if not python.startswith(PYTHON_VERSION + "."):
        raise ImageBuildError(f"Debian {DEBIAN_SUITE} has Python {python}, not {PYTHON_VERSION}")
    _run("venv", ["chroot", str(root), "python3", "-m", "venv", "--without-pip", "/var/lang"])
    note("runtime image: installing awslambdaric and boto3 into /var/lang")
    _run(
        "pip install",
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--platform",
            _WHEEL_PLATFORM[architecture],
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
            "--only-binary=:all:",
            "--target",
            f"{root}{SITE_PACKAGES}",
            "awslambdaric",
            "boto3",
        ],
        note=note,
    )
    # AWS's image ships its libraries' bytecode; without it every container would compile
    # boto3 afresh and the runtime would look ~100 ms slower than it is.
    _run(
        "compileall",
        ["chroot", str(root), "/var/lang/bin/python3", "-m", "compileall", "-q", SITE_PACKAGES],
        note=note,
    )
    for directory, name, text in (
        ("var/runtime", "bootstrap", _BOOTSTRAP),
        ("", "lambda-entrypoint.sh", _ENTRYPOINT),
    ):
        path = root / directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)
    (root / "var" / "task").mkdir(parents=True, exist_ok=True)
    for unneeded in ("usr/share/doc", "usr/share/man", "usr/share/info", "var/lib/apt/lists"):
        shutil.rmtree(root / unneeded, ignore_errors=True)
    for archive in (root / "var/cache/apt/archives").glob("*.deb"):
        archive.unlink()
    versions = {"python": python, "debian": DEBIAN_SUITE}
    for package in ("awslambdaric", "boto3"):
        found = next((root / SITE_PACKAGES.lstrip("/")).glob(f"{package}-*.dist-info"), None)
        if found is not None:
            versions[package] = found.name.removeprefix(f"{package}-").removesuffix(".dist-info")
    return versions


_VERSION = "import platform; print(platform.python_version())"
