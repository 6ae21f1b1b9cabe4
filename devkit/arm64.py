"""An arm64 Python 3.13 on this x86_64 machine: Debian trixie's interpreter under
``qemu-aarch64-static``, for running the arm64 Lambda artifact where no arm64 machine is.

No binfmt_misc and nothing executed inside the root filesystem while it is made:

* ``debootstrap --arch=arm64 --foreign --variant=minbase --include=python3.13,ca-certificates
  trixie ROOTFS MIRROR`` unpacks the base system and only downloads the included packages;
  each downloaded ``.deb`` is then unpacked with ``dpkg -x`` (no maintainer scripts: Python
  needs none to run);
* ``qemu-aarch64-static -L ROOTFS ROOTFS/usr/bin/python3.13 …`` runs the arm64 interpreter as
  one emulated process, its loader and libraries found under ``ROOTFS`` (``-L``).

The root filesystem is kept between runs on one machine (``~/.cache/docker-tls/arm64-rootfs``,
``DOCKER_TLS_CACHE`` moves the cache) with a stamp saying which recipe made it; two runs that
race take a lock, and a build happens in a directory of its own that is renamed into place
only when complete, so a half-built tree is never used. boto3 (which the Lambda runtime
provides and the artifact leaves out) is installed the same way, pure Python, next to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from devkit.runtime_image import DEBIAN_SUITE, PYTHON_VERSION, debian_mirror

QEMU = "qemu-aarch64-static"
PACKAGES = ("python3.13", "ca-certificates")
STAMP = ".docker-tls-rootfs.json"
#: What makes the tree; a change rebuilds the cache instead of reusing a stale one.
RECIPE = (
    f"debootstrap --foreign minbase arm64 {DEBIAN_SUITE} +{','.join(PACKAGES)}; dpkg -x; "
    "compileall stdlib"
)
#: The runtime's boto3 for the emulated interpreter (pure Python: any platform tag works).
BOTO3_RECIPE = "pip boto3 --only-binary --python-version 3.13 manylinux2014_aarch64; compileall"


class Arm64Error(RuntimeError):
    """The emulated interpreter could not be prepared; the message says which step and why."""


@dataclass(frozen=True)
class Rootfs:
    """A ready arm64 root filesystem and how it came to be."""

    path: Path
    built: bool  # False: an earlier run's tree was reused
    seconds: float  # spent building (0 when reused)
    python: str  # the interpreter's version, e.g. 3.13.5

    @property
    def interpreter(self) -> Path:
        return self.path / "usr" / "bin" / f"python{PYTHON_VERSION}"

    def command(self, *arguments: str) -> list[str]:
        """The command line that runs the arm64 Python with ``arguments``, writing no bytecode:
        the tree is shared by every run on the machine and stays as it was built."""
        return [QEMU, "-L", str(self.path), str(self.interpreter), "-B", *arguments]


def cache_dir() -> Path:
    """Where prepared trees are kept (``DOCKER_TLS_CACHE``, else ``~/.cache/docker-tls``)."""
    configured = os.environ.get("DOCKER_TLS_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "docker-tls"


def _recipe_hash(recipe: str) -> str:
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _run(step: str, command: list[str], timeout: float = 900) -> str:
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise Arm64Error(f"{step}: {command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise Arm64Error(f"{step}: no result after {timeout:.0f} s") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-1500:]
        raise Arm64Error(f"{step} failed ({' '.join(command[:3])} …):\n{tail}")
    return result.stdout


def _stamped(path: Path, recipe: str) -> dict[str, str] | None:
    try:
        stamp = json.loads((path / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("recipe") != _recipe_hash(recipe):
        return None
    return {str(k): str(v) for k, v in stamp.items()}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per cached tree; a second run waits, then finds it ready."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _cached(
    path: Path,
    recipe: str,
    build: Callable[[Path], dict[str, str]],
    *,
    rebuild: bool,
) -> tuple[dict[str, str], bool, float]:
    """The stamp of the tree at ``path``, building it into a fresh sibling directory and
    renaming that into place when no tree of ``recipe`` is there. Returns (stamp, built, s)."""
    with _locked(path):
        stamp = None if rebuild else _stamped(path, recipe)
        if stamp is not None:
            return stamp, False, 0.0
        started = time.monotonic()
        work = path.with_name(f"{path.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            facts = build(work)
            stamp = {"recipe": _recipe_hash(recipe), **facts}
            (work / STAMP).write_text(json.dumps(stamp, sort_keys=True), encoding="utf-8")
            if path.exists():
                old = path.with_name(f"{path.name}.old-{uuid.uuid4().hex[:8]}")
                path.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            work.rename(path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return stamp, True, time.monotonic() - started


def python_version(path: Path) -> str:
    """The version of the arm64 interpreter under ``path``, checked to run as aarch64."""
    rootfs = Rootfs(path, False, 0.0, "")
    out = _run(
        "the emulated interpreter",
        rootfs.command(
            "-I", "-c", "import platform; print(platform.machine(), platform.python_version())"
        ),
        timeout=300,
    ).split()
    if len(out) != 2 or out[0] != "aarch64" or not out[1].startswith(PYTHON_VERSION + "."):
        raise Arm64Error(f"{path} holds no arm64 Python {PYTHON_VERSION}: it said {out}")
    return out[1]


def _build_rootfs(work: Path, note: Callable[[str], None]) -> dict[str, str]:
    mirror = debian_mirror()
    note(f"arm64 rootfs: debootstrap --foreign {DEBIAN_SUITE} (arm64) from {mirror}")
    _run(
        "debootstrap",
        [
            "debootstrap",
            "--arch=arm64",
            "--foreign",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            DEBIAN_SUITE,
            str(work),
            mirror,
        ],
    )
    archives = sorted((work / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    note(f"arm64 rootfs: dpkg -x of {len(archives)} packages")
    for archive in archives:
        _run("dpkg -x", ["dpkg", "-x", str(archive), str(work)])
        archive.unlink()
    for unneeded in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"):
        shutil.rmtree(work / unneeded, ignore_errors=True)
    # Debian compiles the standard library in its postinst, which dpkg -x does not run; a host
    # 3.13 does it (bytecode is the same for every 3.13.x), so the emulated interpreter neither
    # compiles it at each start nor writes into the cached tree (it runs with -B).
    compiler = _find_python()
    if compiler:
        stdlib = work / "usr" / "lib" / f"python{PYTHON_VERSION}"
        _run(
            "compileall",
            [
                compiler,
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "-s",
                str(work),
                "-p",
                "/",
                str(stdlib),
            ],
        )
    note("arm64 rootfs: starting its python under qemu")
    return {"python": python_version(work), "suite": DEBIAN_SUITE}


def _host_has_tools() -> None:
    missing = [tool for tool in (QEMU, "debootstrap", "dpkg") if shutil.which(tool) is None]
    if missing:
        raise Arm64Error(
            f"{', '.join(missing)} missing: apt-get install qemu-user-static debootstrap"
        )


def ensure_rootfs(
    *,
    cache: Path | None = None,
    rebuild: bool = False,
    note: Callable[[str], None] = lambda _: None,
) -> Rootfs:
    """The cached arm64 root filesystem, built first when absent or made by another recipe
    (needs root for debootstrap, ``qemu-user-static``, ``debootstrap`` and the Debian archive)."""
    if shutil.which(QEMU) is None:
        raise Arm64Error(f"{QEMU} missing: apt-get install qemu-user-static")
    path = (cache or cache_dir()) / "arm64-rootfs"

    def build(work: Path) -> dict[str, str]:
        _host_has_tools()
        if os.geteuid() != 0:
            raise Arm64Error("building the arm64 root filesystem needs root (debootstrap)")
        return _build_rootfs(work, note)

    stamp, built, seconds = _cached(path, RECIPE, build, rebuild=rebuild)
    if not built:
        note(f"arm64 rootfs: reusing {path} (python {stamp.get('python')})")
    return Rootfs(path, built, seconds, stamp.get("python", ""))


def _find_python() -> str | None:
    """A host Python of the runtime's minor version (scripts/find_python.sh), or None."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "find_python.sh"
    try:
        return _run("find_python", [str(script), PYTHON_VERSION], timeout=60).strip() or None
    except Arm64Error:
        return None


def ensure_runtime_boto3(
    *, cache: Path | None = None, note: Callable[[str], None] = lambda _: None
) -> Path:
    """A directory holding boto3 and its dependencies for the emulated interpreter: what the
    Lambda runtime puts beside the artifact (the artifact leaves them out)."""
    path = (cache or cache_dir()) / "arm64-boto3"

    def build(work: Path) -> dict[str, str]:
        note("arm64 boto3: pip install boto3 (pure Python) for python3.13 aarch64")
        _run(
            "pip install boto3",
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                "--platform",
                "manylinux2014_aarch64",
                "--implementation",
                "cp",
                "--python-version",
                PYTHON_VERSION,
                "--only-binary=:all:",
                "--target",
                str(work),
                "boto3",
            ],
        )
        # The runtime ships its boto3 compiled; without .pyc the emulated interpreter would
        # compile botocore at every start (the magic number is the same for every 3.13.x).
        compiler = _find_python()
        if compiler:
            _run("compileall", [compiler, "-m", "compileall", "-q", "-j", "0", str(work)])
        found = next(work.glob("boto3-*.dist-info"), None)
        version = found.name.removeprefix("boto3-").removesuffix(".dist-info") if found else "?"
        return {"boto3": version}

    _cached(path, BOTO3_RECIPE, build, rebuild=False)
    return path
