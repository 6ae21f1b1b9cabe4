"""Refuse a Lambda artifact whose native code is not for the function's architecture and Python.

The commonest way a Python Lambda with a native dependency breaks is an artifact built with
wheels for another architecture or another Python: nothing fails until the first invoke's
``Runtime.ImportModuleError``, and a stack's Create then waits for its timeout. This reads what
the artifact actually holds, before anything is deployed:

* every ELF file (any file starting ``\\x7fELF``, whatever its name): 64-bit little-endian and
  ``e_machine`` EM_AARCH64 (183) for arm64, EM_X86_64 (62) for x86_64;
* every extension module's ABI tag in its file name: ``.cpython-313-aarch64-linux-gnu.so`` must
  name the target Python and architecture; ``.abi3.so`` suits any CPython 3 (its wheel's tag
  says from which minor on); an untagged ``.so`` is checked by its ELF header only;
* every installed wheel's ``*.dist-info/WHEEL`` tags: at least one must suit CPython
  ``--python`` on manylinux for the architecture, with a glibc no newer than the runtime's.

Standard library only: ``scripts/build_artifact.sh`` runs it with whichever Python builds.

    python -m devkit.artifact_check DIR --architecture arm64 --python 3.13
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
EM_X86_64, EM_AARCH64 = 62, 183
#: What Lambda's architectures are, as each place names them.
MACHINE = {"arm64": EM_AARCH64, "x86_64": EM_X86_64}
MULTIARCH = {"arm64": "aarch64", "x86_64": "x86_64"}  # in tags and cpython file names
_MACHINE_NAMES = {
    3: "i386",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC64",
    22: "s390",
    40: "32-bit ARM",
    EM_X86_64: "x86_64",
    EM_AARCH64: "aarch64 (arm64)",
    243: "RISC-V",
}
#: The Lambda python3.13 runtime is Amazon Linux 2023: glibc 2.34. A manylinux_2_35 wheel
#: would not load there.
RUNTIME_GLIBC = (2, 34)
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_EXTENSION = re.compile(r"\.(?P<tag>[^.]+)\.so$")
_CPYTHON_TAG = re.compile(r"^cpython-(?P<version>\d)(?P<minor>\d+)(?P<flags>[a-z]*)-(?P<rest>.+)$")


def machine_name(machine: int) -> str:
    return _MACHINE_NAMES.get(machine, f"ELF machine {machine}")


@dataclass(frozen=True)
class Target:
    """What the artifact must run on: a Lambda architecture and a CPython minor version."""

    architecture: str  # arm64 or x86_64
    python: str  # e.g. "3.13"

    def __post_init__(self) -> None:
        if self.architecture not in MACHINE:
            raise ValueError(f"architecture must be arm64 or x86_64, not {self.architecture!r}")
        if not re.fullmatch(r"3\.\d+", self.python):
            raise ValueError(f"python must look like 3.13, not {self.python!r}")

    @property
    def minor(self) -> int:
        return int(self.python.split(".")[1])

    def __str__(self) -> str:
        return f"python{self.python} on {self.architecture}"


@dataclass
class Verdict:
    """What was read and what does not suit the target (one line per problem, naming a file)."""

    target: Target
    elf_files: list[str] = field(default_factory=list)
    wheels: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (
                f"{len(self.elf_files)} native files and {len(self.wheels)} wheels, "
                f"all for {self.target}"
            )
        return f"{len(self.problems)} problems for {self.target}:\n" + "\n".join(
            f"  {problem}" for problem in self.problems
        )


def elf_problem(header: bytes, target: Target) -> str | None:
    """Why an ELF header (its first 20 bytes) is not a shared object ``target`` can load."""
    if len(header) < 20 or not header.startswith(ELF_MAGIC):
        return "is not an ELF file"
    if header[4] != 2 or header[5] != 1:
        bits = {1: "32-bit", 2: "64-bit"}.get(header[4], "?-bit")
        order = {1: "little-endian", 2: "big-endian"}.get(header[5], "?-endian")
        return f"is {bits} {order} ELF, expected 64-bit little-endian"
    machine = int.from_bytes(header[18:20], "little")
    if machine != MACHINE[target.architecture]:
        return (
            f"is ELF for {machine_name(machine)} (e_machine {machine}), expected "
            f"{machine_name(MACHINE[target.architecture])} (e_machine "
            f"{MACHINE[target.architecture]}) for {target.architecture}"
        )
    return None


def extension_problem(name: str, target: Target) -> str | None:
    """Why an extension module's file name says it is for another Python or architecture."""
    found = _EXTENSION.search(name)
    if found is None:
        return None
    tag = found["tag"]
    if tag == "abi3":
        return None
    cpython = _CPYTHON_TAG.match(tag)
    if cpython is None:
        return None  # a library (libffi-….so), not a module: its ELF header says enough
    version = f"{cpython['version']}.{cpython['minor']}"
    expected = f"cpython-{target.python.replace('.', '')}-{MULTIARCH[target.architecture]}"
    if version != target.python or cpython["flags"]:
        return (
            f"is an extension module for CPython {version}{cpython['flags']} (tag {tag}), "
            f"expected {expected}-linux-gnu or abi3"
        )
    if not cpython["rest"].startswith(MULTIARCH[target.architecture] + "-linux-gnu"):
        return (
            f"is an extension module for {cpython['rest']} (tag {tag}), expected "
            f"{expected}-linux-gnu or abi3"
        )
    return None


def _platform_suits(platform: str, target: Target) -> bool:
    if platform == "any":
        return True
    arch = MULTIARCH[target.architecture]
    if not platform.endswith("_" + arch):
        return False
    base = platform.removesuffix("_" + arch)
    if base in _LEGACY_MANYLINUX:
        return _LEGACY_MANYLINUX[base] <= RUNTIME_GLIBC
    found = re.fullmatch(r"manylinux_(\d+)_(\d+)", base)
    return found is not None and (int(found[1]), int(found[2])) <= RUNTIME_GLIBC


def _python_suits(interpreter: str, abi: str, target: Target) -> bool:
    found = re.fullmatch(r"(py|cp)(\d)(\d*)", interpreter)
    if found is None or found[2] != "3":
        return False
    minor = int(found[3]) if found[3] else None
    if abi == "none":
        return minor is None or minor <= target.minor
    if abi == "abi3":
        return found[1] == "cp" and (minor is None or minor <= target.minor)
    return found[1] == "cp" and abi == f"cp3{target.minor}" and minor == target.minor


def tag_suits(tag: str, target: Target) -> bool:
    """Whether one wheel tag (``cp311-abi3-manylinux_2_28_aarch64``, with compressed sets
    such as ``py2.py3-none-any``) holds a combination ``target`` can load."""
    parts = tag.strip().split("-")
    if len(parts) != 3:
        return False
    interpreters, abis, platforms = (part.split(".") for part in parts)
    return any(
        _python_suits(interpreter, abi, target) and _platform_suits(platform, target)
        for interpreter in interpreters
        for abi in abis
        for platform in platforms
    )


def wheel_problem(wheel_text: str, target: Target) -> str | None:
    """Why a ``WHEEL`` metadata file's tags do not include one for ``target``."""
    tags = [
        line.split(":", 1)[1].strip()
        for line in wheel_text.splitlines()
        if line.lower().startswith("tag:")
    ]
    if not tags:
        return "has no Tag line"
    if any(tag_suits(tag, target) for tag in tags):
        return None
    expected = (
        f"a tag for CPython {target.python} (cp3{target.minor}, abi3 or pure Python) on "
        f"manylinux {MULTIARCH[target.architecture]} with glibc <= "
        f"{RUNTIME_GLIBC[0]}.{RUNTIME_GLIBC[1]} (Lambda's)"
    )
    return f"is a wheel tagged {', '.join(tags)}, expected {expected}"


def _files(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def check(root: Path, target: Target) -> Verdict:
    """Read every file of the artifact at ``root``; the verdict lists each mismatch."""
    verdict = Verdict(target)
    if not root.is_dir():
        verdict.problems.append(f"{root}: no such directory")
        return verdict
    for path in _files(root):
        relative = str(path.relative_to(root))
        with path.open("rb") as handle:
            header = handle.read(20)
        if header.startswith(ELF_MAGIC):
            verdict.elf_files.append(relative)
            problem = elf_problem(header, target)
            if problem:
                verdict.problems.append(f"{relative} {problem}")
        elif path.name.endswith(".so") or ".so." in path.name:
            verdict.problems.append(f"{relative} is named like a shared object but is not ELF")
        problem = extension_problem(path.name, target)
        if problem:
            verdict.problems.append(f"{relative} {problem}")
        if path.name == "WHEEL" and path.parent.name.endswith(".dist-info"):
            verdict.wheels.append(path.parent.name)
            problem = wheel_problem(path.read_text(encoding="utf-8", errors="replace"), target)
            if problem:
                verdict.problems.append(f"{relative} {problem}")
    return verdict


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.artifact_check",
        description="Refuse a Lambda artifact holding native code or wheels for another "
        "architecture or Python.",
    )
    parser.add_argument("directory", type=Path, help="the built artifact (sam build's output)")
    parser.add_argument("--architecture", required=True, choices=sorted(MACHINE))
    parser.add_argument("--python", required=True, help="the runtime's version, e.g. 3.13")
    args = parser.parse_args(argv)
    try:
        target = Target(args.architecture, args.python)
    except ValueError as error:
        parser.error(str(error))
    verdict = check(args.directory, target)
    if verdict.ok:
        print(f"artifact check: {args.directory}: {verdict.summary()}")
        return 0
    print(
        f"artifact check: {args.directory} is REFUSED (Lambda would fail to import it): "
        f"{verdict.summary()}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
