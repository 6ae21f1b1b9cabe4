"""The arm64 artifact through a stack's lifecycle, under emulation (``make arm64-check``).

The template deploys arm64 (Graviton) by default; this machine is x86_64. This builds the
artifact as ``sam build`` does for ``Architecture=arm64`` (``make build-DockerTlsFunction``,
which refuses native code for anything else, :mod:`devkit.artifact_check`), then runs it with
Debian trixie's arm64 Python 3.13 under ``qemu-aarch64-static`` (:mod:`devkit.arm64`): one
emulated interpreter imports ``handler.app`` from the artifact, beside a pure-Python boto3 as
the Lambda runtime provides, and calls ``lambda_handler(event, context)`` for CloudFormation
events made by :mod:`devkit.events`:

1. Create of the generator: ``created``, the bundle in SSM;
2. Update with a new ``Version``: ``reused``, the same CA, and no parameter written (every
   parameter's SSM version unchanged);
3. a getter of the server key: ``NoEcho`` and a key matching the stored server certificate;
4. Delete of the generator: no parameter of the bundle left.

SSM is moto's server on 127.0.0.1 in this (host) Python, the response receiver an HTTPS one
on 127.0.0.1 whose CA the function is told to trust: the function's TLS runs on arm64 too.
Keys are ECDSA P-256, to keep emulated steps short and steady (one key 0.07 s under emulation
here, RSA-2048 0.2 to 0.85 s, RSA-4096 2.5 s). Emulation says nothing about Graviton's speed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from devkit.arm64 import Arm64Error, Rootfs, ensure_rootfs, ensure_runtime_boto3
from devkit.artifact_check import Target, check
from devkit.events import event
from devkit.receiver import Receiver, response_receiver
from devkit.ssm_server import DEFAULT_REGION, local_ssm
from handler import GENERATOR, GETTER
from handler.certificates import same_key
from handler.codec import Unreadable, certificate_from_stored, private_key_from_stored
from handler.names import BundleNames, Item

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().with_name("arm64_driver.py")
WORK = ROOT / ".aws-sam" / "arm64-check"
TARGET = Target("arm64", "3.13")
RACK = "docker-tls-arm64"
STEPS = ("create", "update", "getter", "delete")
#: A cold start took 10 to 160 s here under emulation (load decides), a step up to 15 s.
IMPORT_TIMEOUT = 420.0
STEP_TIMEOUT = 180.0


class LifecycleError(RuntimeError):
    """The run could not get as far as the steps (build, check, interpreter)."""


@dataclass
class Step:
    """One step and its verdict."""

    name: str
    seconds: float = 0.0
    passed: bool = False
    verdict: str = "not run"


@dataclass
class Report:
    """What a run did, for the lines ``make arm64-check`` prints and for tests."""

    rootfs: Rootfs
    artifact: Path
    check_summary: str
    steps: list[Step] = field(default_factory=list)
    log: str = ""  # the function's own output (stderr of the emulated interpreter)

    @property
    def passed(self) -> bool:
        names = [step.name for step in self.steps]
        return names == ["import", *STEPS] and all(step.passed for step in self.steps)


def build_artifact(
    destination: Path,
    architecture: str = "arm64",
    note: Callable[[str], None] = lambda _: None,
) -> str:
    """The artifact for ``architecture``, built by the Makefile target ``sam build`` runs, into
    a fresh ``destination``; returns the build's output (with the artifact check's line)."""
    shutil.rmtree(destination, ignore_errors=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    note(f"building the {architecture} artifact into {destination}")
    result = subprocess.run(
        ["make", "-s", "build-DockerTlsFunction", f"ARTIFACTS_DIR={destination}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "PYTHON": sys.executable, "ARTIFACT_ARCHITECTURE": architecture},
    )
    if result.returncode != 0:
        raise LifecycleError(
            f"the {architecture} build failed:\n{(result.stdout + result.stderr)[-3000:]}"
        )
    return result.stdout


def _properties(version: str) -> dict[str, Any]:
    return {
        "Rack": RACK,
        "Version": version,
        "KeyAlgorithm": "ECDSA-P256",
        "ServerSubjectAltNames": ["localhost", "127.0.0.1"],
    }


def _events(receiver: Receiver) -> dict[str, dict[str, Any]]:
    """The four requests CloudFormation sends for a stack's create, update and delete."""
    names = BundleNames.for_rack(RACK)
    first, second = _properties("1"), _properties("2")
    return {
        "create": event("Create", GENERATOR, "DockerTLS", first, response_url=receiver.url()),
        "update": event(
            "Update",
            GENERATOR,
            "DockerTLS",
            second,
            response_url=receiver.url(),
            physical_id=names.prefix,
            old_properties=first,
        ),
        "getter": event(
            "Create",
            GETTER,
            "DockerTLSServerKey",
            {"Rack": RACK, "Version": "1", "ParameterKey": names.key(Item.SERVER)},
            response_url=receiver.url(),
        ),
        "delete": event(
            "Delete",
            GENERATOR,
            "DockerTLS",
            second,
            response_url=receiver.url(),
            physical_id=names.prefix,
        ),
    }


class _Ssm:
    """The host's view of the local SSM endpoint: the bundle's parameters and their versions."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self._client = boto3.client("ssm", region_name=DEFAULT_REGION, endpoint_url=endpoint)
        self.prefix = BundleNames.for_rack(RACK).prefix

    def versions(self) -> dict[str, int]:
        """Every parameter whose name starts with the bundle's prefix, and its version."""
        found: dict[str, int] = {}
        for page in self._client.get_paginator("describe_parameters").paginate(
            ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": [self.prefix]}]
        ):
            for parameter in page["Parameters"]:
                found[parameter["Name"]] = int(parameter["Version"])
        return found

    def value(self, name: str) -> str:
        parameter = self._client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        return str(parameter["Value"])


def judge(name: str, response: dict[str, Any], ssm: _Ssm, state: dict[str, Any]) -> str | None:
    """Why the response and SSM's state after step ``name`` are wrong, or None."""
    data = response.get("Data") or {}
    if response.get("Status") != "SUCCESS":
        return f"{response.get('Status')}: {str(response.get('Reason', ''))[:200]}"
    versions = ssm.versions()
    names = BundleNames(ssm.prefix)
    if name == "create":
        missing = [n for n in names.material if n not in versions]
        state.update(ca=data.get("CAFingerprint"), versions=versions)
        if data.get("Action") != "created" or response.get("PhysicalResourceId") != ssm.prefix:
            return f"Action {data.get('Action')}, id {response.get('PhysicalResourceId')}"
        if missing:
            return f"{len(missing)} of the bundle's parameters missing from SSM"
        state["line"] = f"Action created, CA {str(state['ca'])[:16]}…, {len(versions)} parameters"
    elif name == "update":
        before: dict[str, int] = state.get("versions", {})
        changed = sorted(n for n in versions if versions[n] != before.get(n))
        changed += sorted(n for n in before if n not in versions)
        if data.get("Action") != "reused" or data.get("CAFingerprint") != state.get("ca"):
            same = data.get("CAFingerprint") == state.get("ca")
            return f"Action {data.get('Action')}, {'same' if same else 'another'} CA"
        if changed:
            return f"Action reused but {len(changed)} parameters written: {changed[:3]}"
        state["line"] = f"Action reused, same CA, 0 of {len(versions)} parameters written"
    elif name == "getter":
        try:
            key = private_key_from_stored(str(data.get("Value", "")))
            cert = certificate_from_stored(ssm.value(names.cert(Item.SERVER)))
        except Unreadable as error:
            return f"Value is not the server key: {error}"
        state["secret"] = str(data["Value"])
        if not response.get("NoEcho") or not same_key(cert, key):
            return f"NoEcho {response.get('NoEcho')}, key matches: {same_key(cert, key)}"
        state["line"] = "NoEcho, a key matching the stored server certificate"
    elif name == "delete":
        if versions:
            return f"{len(versions)} of the bundle's parameters left in SSM"
        state["line"] = "0 of the bundle's parameters left in SSM"
    if name != "getter" and any(b"PRIVATE KEY" in _decoded(str(v)) for v in data.values()):
        return "a private key in the generator's response"
    return None


def _decoded(value: str) -> bytes:
    """A value as stored or answered: base64 of PEM, or PEM itself."""
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return value.encode()


class _Driver:
    """The emulated interpreter running :mod:`devkit.arm64_driver`, spoken to line by line."""

    def __init__(self, command: list[str], env: dict[str, str], log: IO[str]) -> None:
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def answer(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return {"error": f"no answer in {timeout:.0f} s"}
        if line is None:
            return {"error": f"the emulated interpreter exited ({self._process.wait()})"}
        answer: dict[str, Any] = json.loads(line)
        return answer

    def send(self, step: str, request: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"step": step, "event": request}) + "\n")
        self._process.stdin.flush()

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@contextmanager
def _driver(
    rootfs: Rootfs, artifact: Path, runtime: Path, env: dict[str, str], log: IO[str]
) -> Iterator[_Driver]:
    command = rootfs.command("-I", "-S", str(DRIVER), str(artifact), str(runtime), str(ROOT))
    driver = _Driver(command, env, log)
    try:
        yield driver
    finally:
        driver.close()


def _import_verdict(answer: dict[str, Any], artifact: Path) -> Step:
    step = Step("import", float(answer.get("seconds", 0.0)))
    if "error" in answer:
        step.verdict = f"{answer['error']}"[:300]
        return step
    inside = all(
        str(answer.get(key, "")).startswith(str(artifact)) for key in ("handler", "cryptography")
    )
    step.passed = answer.get("machine") == "aarch64" and inside
    step.verdict = (
        f"import {step.seconds:.1f} s, handler.app "
        f"{'from the artifact' if inside else 'NOT from the artifact'} on "
        f"{answer.get('machine')} Python {answer.get('python')}, cryptography "
        f"{answer.get('cryptography_version')} ({answer.get('openssl')})"
    )
    return step


def run(
    artifact: Path,
    *,
    check_first: bool = True,
    rootfs: Rootfs | None = None,
    note: Callable[[str], None] = lambda _: None,
) -> Report:
    """Run the artifact at ``artifact`` through the lifecycle under the arm64 interpreter.

    ``check_first=False`` skips the artifact check, to show what the emulated interpreter does
    with an artifact the check would refuse (the steps then never run if the import fails).
    """
    artifact = artifact.resolve()
    verdict = check(artifact, TARGET)
    if check_first and not verdict.ok:
        raise LifecycleError(f"{artifact} is refused: {verdict.summary()}")
    rootfs = rootfs or ensure_rootfs(note=note)
    runtime = ensure_runtime_boto3(note=note)
    report = Report(rootfs, artifact, verdict.summary())
    with (
        local_ssm() as endpoint,
        response_receiver() as receiver,
        tempfile.TemporaryFile("w+", encoding="utf-8") as log,
    ):
        ssm = _Ssm(endpoint.endpoint)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": DEFAULT_REGION,
            "AWS_REGION": DEFAULT_REGION,
            "AWS_ENDPOINT_URL_SSM": endpoint.endpoint,
            # A host path: qemu's -L looks under the root filesystem first, then here.
            "DOCKER_TLS_RESPONSE_CA_BUNDLE": str(receiver.ca_file),
            "LOG_LEVEL": "INFO",
        }
        requests = _events(receiver)
        note("starting the arm64 interpreter and importing handler.app (10 s to minutes)")
        started = time.monotonic()
        with _driver(rootfs, artifact, runtime, env, log) as driver:
            imported = _import_verdict(driver.answer(IMPORT_TIMEOUT), artifact)
            # The step's time is the whole cold start: qemu, the interpreter, the imports.
            imported.seconds = time.monotonic() - started
            report.steps.append(imported)
            state: dict[str, Any] = {}
            for name in STEPS if report.steps[0].passed else ():
                request = requests[name]
                driver.send(name, request)
                answer = driver.answer(STEP_TIMEOUT)
                step = Step(name, float(answer.get("seconds", 0.0)))
                report.steps.append(step)
                responses = receiver.responses(str(request["ResponseURL"]))
                if "error" in answer:
                    step.verdict = str(answer["error"])[:300]
                elif len(responses) != 1:
                    step.verdict = f"{len(responses)} responses received, expected 1"
                else:
                    problem = judge(name, responses[0], ssm, state)
                    step.passed = problem is None
                    step.verdict = problem or str(state.pop("line", "ok"))

        log.seek(0)
        report.log = log.read()
    secret = state.get("secret")
    if "PRIVATE KEY" in report.log or (secret and str(secret)[:48] in report.log):
        report.steps.append(Step("logs", 0.0, False, "key material in the function's output"))
    return report


def line(step: Step) -> str:
    """One step as ``make arm64-check`` prints it."""
    return f"{step.name:7} {step.seconds:6.1f} s  {'ok' if step.passed else 'FAIL'}: {step.verdict}"


def lines(report: Report) -> list[str]:
    origin = f"built in {report.rootfs.seconds:.0f} s" if report.rootfs.built else "cached"
    return [
        f"rootfs  {report.rootfs.path} (Debian trixie arm64, python {report.rootfs.python}, "
        f"{origin}), under qemu-aarch64-static",
        f"check   {report.check_summary}",
        *(line(step) for step in report.steps),
        "PASSED" if report.passed else "FAILED",
    ]


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.arm64_lifecycle",
        description="Build the arm64 artifact and run it through Create, Update, a getter and "
        "Delete under an emulated arm64 Python 3.13, against a local SSM endpoint.",
    )
    parser.add_argument(
        "--artifact", type=Path, help="an artifact already built (default: build one)"
    )
    args = parser.parse_args(argv)
    out = out or sys.stdout

    def note(text: str) -> None:
        print(f"arm64-check: {text}", file=sys.stderr, flush=True)

    try:
        artifact = args.artifact
        if artifact is None:
            # Not under .aws-sam/build: the build script would read that directory's
            # build.toml (a sam build for x86_64, say) and refuse to build arm64 there.
            artifact = WORK / "build" / "DockerTlsFunction"
            started = time.monotonic()
            build_artifact(artifact, note=note)
            note(f"built and checked in {time.monotonic() - started:.0f} s")
        report = run(artifact, note=note)
    except (LifecycleError, Arm64Error) as error:
        print(f"arm64-check: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines(report)), file=out)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
