"""devkit/artifact_check.py on crafted artifacts: ELF headers, extension names and wheel tags
that Lambda could or could not load. (The real built artifacts: tests/test_artifact.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.artifact_check import EM_AARCH64, EM_X86_64, Target, check, main, tag_suits

ARM64 = Target("arm64", "3.13")
X86_64 = Target("x86_64", "3.13")


def _elf(machine: int, *, bits: int = 2, order: int = 1) -> bytes:
    """An ELF header as a linker writes it: ident, e_type ET_DYN (3), e_machine, padding."""
    ident = b"\x7fELF" + bytes([bits, order, 1, 0]) + bytes(8)
    return ident + (3).to_bytes(2, "little") + machine.to_bytes(2, "little") + bytes(44)


def _write(root: Path, relative: str, content: bytes | str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def _wheel(root: Path, dist: str, *tags: str) -> None:
    text = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
    _write(root, f"{dist}.dist-info/WHEEL", text + "".join(f"Tag: {tag}\n" for tag in tags))


def test_an_x86_64_extension_in_an_arm64_artifact_is_refused_by_its_elf_header(
    tmp_path: Path,
) -> None:
    rust = "cryptography/hazmat/bindings/_rust.abi3.so"
    _write(tmp_path, rust, _elf(EM_X86_64))
    arm = check(tmp_path, ARM64)
    assert not arm.ok
    assert arm.elf_files == [rust]
    assert arm.problems == [
        f"{rust} is ELF for x86_64 (e_machine 62), expected aarch64 (arm64) (e_machine 183) "
        "for arm64"
    ]
    assert check(tmp_path, X86_64).ok


def test_the_header_is_read_whatever_the_file_is_called(tmp_path: Path) -> None:
    _write(tmp_path, "pkg/helper-binary", _elf(EM_X86_64))
    _write(tmp_path, "pkg.libs/libffi-4a5b.so.8.1.0", _elf(EM_AARCH64))
    verdict = check(tmp_path, ARM64)
    assert verdict.elf_files == ["pkg/helper-binary", "pkg.libs/libffi-4a5b.so.8.1.0"]
    assert len(verdict.problems) == 1
    assert verdict.problems[0].startswith("pkg/helper-binary is ELF for x86_64")


@pytest.mark.parametrize(
    ("bits", "order", "says"),
    [(1, 1, "32-bit little-endian"), (2, 2, "64-bit big-endian")],
)
def test_a_32_bit_or_big_endian_object_is_refused(
    tmp_path: Path, bits: int, order: int, says: str
) -> None:
    _write(tmp_path, "m.abi3.so", _elf(EM_AARCH64, bits=bits, order=order))
    verdict = check(tmp_path, ARM64)
    assert verdict.problems == [f"m.abi3.so is {says} ELF, expected 64-bit little-endian"]


def test_a_shared_object_that_is_not_elf_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "lib/libthing.so", "/* GNU ld script */ INPUT(libthing.so.1)\n")
    assert check(tmp_path, ARM64).problems == [
        "lib/libthing.so is named like a shared object but is not ELF"
    ]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("_cffi_backend.cpython-313-aarch64-linux-gnu.so", None),
        ("_rust.abi3.so", None),
        ("_cffi_backend.cpython-312-aarch64-linux-gnu.so", "for CPython 3.12"),
        ("_cffi_backend.cpython-313t-aarch64-linux-gnu.so", "for CPython 3.13t"),
        ("_cffi_backend.cpython-313-x86_64-linux-gnu.so", "for x86_64-linux-gnu"),
        ("_cffi_backend.cpython-313-aarch64-linux-musl.so", "for aarch64-linux-musl"),
    ],
)
def test_an_extension_modules_abi_tag_must_name_the_runtime(
    tmp_path: Path, name: str, problem: str | None
) -> None:
    _write(tmp_path, name, _elf(EM_AARCH64))
    problems = check(tmp_path, ARM64).problems
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1
        assert problems[0].startswith(f"{name} is an extension module {problem} ")
        assert "expected cpython-313-aarch64-linux-gnu or abi3" in problems[0]


@pytest.mark.parametrize(
    ("tag", "suits"),
    [
        ("py3-none-any", True),
        ("py2.py3-none-any", True),
        ("cp311-abi3-manylinux_2_28_aarch64", True),
        ("cp313-cp313-manylinux_2_17_aarch64.manylinux2014_aarch64", True),
        ("cp311-abi3-manylinux_2_34_aarch64", True),
        ("cp311-abi3-manylinux_2_35_aarch64", False),  # newer glibc than Lambda's 2.34
        ("cp314-abi3-manylinux_2_28_aarch64", False),  # abi3 from 3.14 on
        ("cp312-cp312-manylinux_2_17_aarch64", False),
        ("cp313-cp313-musllinux_1_2_aarch64", False),
        ("cp313-cp313-manylinux_2_17_x86_64", False),
        ("cp313-cp313-win_arm64", False),
        ("py2-none-any", False),
        ("not-a-tag", False),
    ],
)
def test_wheel_tags_for_python_313_on_arm64(tag: str, suits: bool) -> None:
    assert tag_suits(tag, ARM64) is suits


def test_a_wheel_for_another_platform_is_named_with_its_tags(tmp_path: Path) -> None:
    _wheel(tmp_path, "cffi-2.0.0", "cp313-cp313-manylinux_2_17_x86_64")
    _wheel(tmp_path, "pycparser-2.22", "py3-none-any")
    verdict = check(tmp_path, ARM64)
    assert verdict.wheels == ["cffi-2.0.0.dist-info", "pycparser-2.22.dist-info"]
    assert verdict.problems == [
        "cffi-2.0.0.dist-info/WHEEL is a wheel tagged cp313-cp313-manylinux_2_17_x86_64, "
        "expected a tag for CPython 3.13 (cp313, abi3 or pure Python) on manylinux aarch64 "
        "with glibc <= 2.34 (Lambda's)"
    ]


def test_the_command_line_exits_1_and_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "_cffi_backend.cpython-313-x86_64-linux-gnu.so", _elf(EM_X86_64))
    assert main([str(tmp_path), "--architecture", "x86_64", "--python", "3.13"]) == 0
    assert "1 native files and 0 wheels, all for python3.13 on x86_64" in capsys.readouterr().out
    assert main([str(tmp_path), "--architecture", "arm64", "--python", "3.13"]) == 1
    err = capsys.readouterr().err
    assert "REFUSED" in err
    assert "_cffi_backend.cpython-313-x86_64-linux-gnu.so is ELF for x86_64" in err


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    assert check(tmp_path / "nothing", ARM64).problems == [
        f"{tmp_path / 'nothing'}: no such directory"
    ]


def test_a_target_lambda_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="arm64 or x86_64"):
        Target("aarch64", "3.13")
    with pytest.raises(ValueError, match="like 3.13"):
        Target("arm64", "313")
