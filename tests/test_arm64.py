"""The arm64 artifact (the template's default Architecture) runs: built as ``sam build`` builds
it, imported and driven through Create → Update → getter → Delete by Debian's arm64 Python 3.13
under ``qemu-aarch64-static``, against moto's SSM server on 127.0.0.1 (devkit/arm64_lifecycle.py).
And the x86_64 artifact is refused there: by the check before it runs, and by the emulated
interpreter itself when the check is skipped.

Needs qemu-user-static and debootstrap (``.ci/run`` installs them), root to build the root
filesystem once (~80 s, then cached), and the package index for the builds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devkit.arm64 import QEMU, Rootfs, ensure_rootfs
from devkit.arm64_lifecycle import STEPS, LifecycleError, build_artifact, lines, run

pytestmark = [pytest.mark.arm64, pytest.mark.slow]


@pytest.fixture(scope="module")
def rootfs() -> Rootfs:
    missing = [tool for tool in (QEMU, "debootstrap") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: apt-get install qemu-user-static debootstrap")
    return ensure_rootfs()


def _built(tmp_path_factory: pytest.TempPathFactory, architecture: str) -> Path:
    """Built as sam build builds it for ``Architecture=architecture`` (the check included)."""
    destination = tmp_path_factory.mktemp(f"arm64-test-{architecture}") / "DockerTlsFunction"
    output = build_artifact(destination, architecture)
    assert f"all for python3.13 on {architecture}" in output, output
    return destination


def test_the_arm64_artifact_goes_through_a_lifecycle_under_emulation(
    rootfs: Rootfs,
    tmp_path_factory: pytest.TempPathFactory,
    record_property: pytest.RecordProperty,
) -> None:
    artifact = _built(tmp_path_factory, "arm64")
    report = run(artifact, rootfs=rootfs)
    print("\n" + "\n".join(lines(report)))
    for step in report.steps:
        record_property(f"{step.name}_seconds", round(step.seconds, 1))
    assert [step.name for step in report.steps] == ["import", *STEPS], lines(report)
    failed = [f"{step.name}: {step.verdict}" for step in report.steps if not step.passed]
    assert not failed, "\n".join(lines(report))
    imported, create, update, getter, delete = report.steps
    assert "handler.app from the artifact on aarch64 Python 3.13." in imported.verdict
    assert create.verdict.startswith("Action created")
    assert update.verdict.startswith("Action reused, same CA, 0 of ")
    assert getter.verdict.startswith("NoEcho")
    assert delete.verdict == "0 of the bundle's parameters left in SSM"
    assert report.passed
    # The function's own JSON log lines came out of the emulated interpreter.
    assert '"RequestType": "Delete"' in report.log or '"RequestType":"Delete"' in report.log


def test_the_x86_64_artifact_is_refused_for_arm64(
    rootfs: Rootfs, tmp_path_factory: pytest.TempPathFactory
) -> None:
    artifact = _built(tmp_path_factory, "x86_64")
    with pytest.raises(LifecycleError) as refused:
        run(artifact, rootfs=rootfs)
    message = str(refused.value)
    assert "is refused" in message
    assert "cryptography/hazmat/bindings/_rust.abi3.so is ELF for x86_64 (e_machine 62)" in message
    # What the check spares a stack: under the arm64 interpreter the import itself fails.
    report = run(artifact, rootfs=rootfs, check_first=False)
    assert [step.name for step in report.steps] == ["import"], lines(report)
    imported = report.steps[0]
    assert not imported.passed
    assert imported.verdict.startswith("ImportError"), imported.verdict
    assert "_rust" in imported.verdict or "_cffi_backend" in imported.verdict, imported.verdict
    assert not report.passed
