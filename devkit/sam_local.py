"""The function as AWS runs it: ``sam build`` and ``sam local invoke`` in a Python 3.13 runtime
container, for the shipped events create → update → getter → delete (``make sam-local``).

Each step is judged by the response the CloudFormation receiver got, never by SAM's exit code
(0 even when the container failed): Create answers ``created``, the Update ``reused`` with the
same CA, the getter of the server key ``NoEcho`` with a key that matches the stored server
certificate, and the Delete leaves no parameter behind. The function's log lines must be one
JSON object each and hold no key material.

Everything stays on this machine: SSM and STS are moto's server on 127.0.0.1, the receiver is
HTTPS on 127.0.0.1 with its CA mounted into the container, the container shares the host's
loopback, and SAM runs with fake credentials and telemetry off. The runtime image is AWS's
(``--image aws``, pulled by SAM) or a stand-in built from Debian packages (``--image debian``,
:mod:`devkit.runtime_image`, reused between runs); ``auto`` takes AWS's when
``public.ecr.aws`` resolves, else the stand-in.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from devkit.artifact_check import Target, check
from devkit.docker_engine import EngineError, docker_engine
from devkit.progress import ticking
from devkit.receiver import Receiver, response_receiver
from devkit.runtime_image import ImageBuildError, RuntimeImage, ensure_image, host_architecture
from devkit.sam_cli import DEFAULT_VENV, REGION, ROOT, SamCli, SamError
from devkit.sam_host_network import CA_MOUNT
from devkit.ssm_server import local_ssm
from handler.certificates import same_key
from handler.codec import Unreadable, certificate_from_stored, private_key_from_stored
from handler.names import BundleNames, Item

FUNCTION = "DockerTlsFunction"
EVENTS = ROOT / "events"
WORK = ROOT / ".aws-sam" / "sam-local"
AWS_REGISTRY = "public.ecr.aws"
STEPS = ("create", "update", "getter", "delete")


class LocalRunError(RuntimeError):
    """The run could not get as far as invoking the function."""


@dataclass
class Step:
    """One invoke and its verdict."""

    name: str
    event: Path
    seconds: float = 0.0
    status: str = "-"
    verdict: str = ""
    passed: bool = False
    response: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Report:
    """What a run did, for the table and for tests."""

    architecture: str
    image: str
    image_origin: str  # "aws", "debian (built in N s)", "debian (reused)"
    image_bytes: int | None
    sam_version: str
    build_seconds: float
    steps: list[Step]

    @property
    def passed(self) -> bool:
        return len(self.steps) == len(STEPS) and all(step.passed for step in self.steps)


def _decoded(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return value.encode()


def _judge(
    name: str, response: dict[str, Any], state: dict[str, Any], stored: Callable[[], dict[str, str]]
) -> tuple[bool, str]:
    """Whether ``response`` is what step ``name`` must answer, and a line saying so."""
    data = response.get("Data") or {}
    if response.get("Status") != "SUCCESS":
        return False, f"FAILED: {response.get('Reason', '')[:150]}"
    if name in ("create", "update"):
        action, ca = data.get("Action"), data.get("CAFingerprint", "")
        if any(b"PRIVATE KEY" in _decoded(str(v)) for v in data.values()):
            return False, "a private key in the generator's response"
        if name == "create":
            state["ca"] = ca
            ok = action == "created" and response.get("PhysicalResourceId") == state["prefix"]
            return ok, f"Action {action}, CA {ca[:16]}…"
        same = ca == state.get("ca")
        return action == "reused" and same, f"Action {action}, {'same' if same else 'another'} CA"
    if name == "getter":
        values = stored()
        names = BundleNames(state["prefix"])
        try:
            key = private_key_from_stored(str(data.get("Value", "")))
            cert = certificate_from_stored(values[names.cert(Item.SERVER)])
        except (Unreadable, KeyError) as error:
            return False, f"Value is not the server key: {error}"
        state["secret"] = str(data["Value"])
        ok = bool(response.get("NoEcho")) and same_key(cert, key)
        return ok, f"NoEcho {response.get('NoEcho')}, a key matching the server certificate"
    if name == "delete":
        left = stored()
        return not left, f"{len(left)} of the bundle's parameters left in SSM"
    raise ValueError(name)


def _log_problem(output: str, secret: str | None) -> str | None:
    """Why the function's log lines in SAM's output are not acceptable, or None."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        return "no JSON log line from the function"
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            return f"a log line is not one JSON object: {line[:80]}…"
    if "PRIVATE KEY" in output or (secret and secret[:48] in output):
        return "key material in the function's output"
    return None


def _resolve_image(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        socket.getaddrinfo(AWS_REGISTRY, 443)
    except OSError:
        return "debian"
    return "aws"


@dataclass(frozen=True)
class LocalLambda:
    """The built function, ready to invoke in its runtime container on this machine."""

    sam: SamCli
    receiver: Receiver
    endpoint: str  # the local SSM endpoint
    architecture: str
    image: str
    image_origin: str
    image_bytes: int | None
    sam_version: str
    work: Path  # the build, the events sent and SAM's logs
    build_dir: Path
    build_seconds: float
    invoke_arguments: tuple[str, ...]  # template, env vars, region, architecture, image

    @property
    def template(self) -> Path:
        return self.build_dir / "template.yaml"


def _check_artifact(artifact: Path, architecture: str) -> None:
    """Fail early and clearly on an artifact the container could not import (the build checks
    it too; this also covers a build directory left by something else)."""
    rust = artifact / "cryptography" / "hazmat" / "bindings" / "_rust.abi3.so"
    if not rust.is_file():
        raise LocalRunError(f"sam build left no cryptography in {artifact}")
    verdict = check(artifact, Target(architecture, "3.13"))
    if not verdict.ok:
        raise LocalRunError(f"the artifact is refused: {verdict.summary()}")


@contextmanager
def local_lambda(
    *,
    venv: Path = DEFAULT_VENV,
    image_choice: str = "auto",
    rebuild_image: bool = False,
    work: Path = WORK,
    note: Callable[[str], None] = lambda _: None,
) -> Iterator[LocalLambda]:
    """A Docker engine, the runtime image, ``sam build`` for this machine's architecture, a
    fresh local SSM endpoint and an HTTPS receiver, for as long as the context lasts.

    The container sees only the receiver's CA certificate (a directory of its own, mounted
    read-only), never the receiver's key.
    """
    architecture = host_architecture()
    build_dir = work / "build"
    with docker_engine() as engine:
        image_args: list[str] = []
        image: RuntimeImage | None = None
        origin = _resolve_image(image_choice)
        if origin == "debian":
            image = ensure_image(engine, architecture, rebuild=rebuild_image, note=note)
            image_args = ["--skip-pull-image", "--invoke-image", image.name]
            origin = f"debian ({f'built in {image.seconds:.0f} s' if image.built else 'reused'})"
        with (
            local_ssm() as endpoint,
            response_receiver() as receiver,
            tempfile.TemporaryDirectory(prefix="sam-local-ca-") as ca_dir,
        ):
            shutil.copy(receiver.ca_file, Path(ca_dir) / receiver.ca_file.name)
            Path(ca_dir).chmod(0o755)
            sam = SamCli(venv, engine, endpoint.endpoint, ca_dir=Path(ca_dir))
            with ticking(note, "sam --version"):
                version = sam.check()
            overrides = ["--parameter-overrides", f"Architecture={architecture}"]
            note(f"sam build for {architecture} into {build_dir.relative_to(ROOT)}")
            with ticking(note, "sam build"):
                built = sam.run(
                    [
                        *("build", "--template", "template.yaml", "--build-dir", str(build_dir)),
                        *overrides,
                    ],
                    log=work / "logs" / "build.log",
                )
            if built.returncode != 0:
                raise LocalRunError(f"sam build failed:\n{built.output[-2000:]}")
            _check_artifact(build_dir / FUNCTION, architecture)
            env_vars = work / "env.json"
            env_vars.write_text(
                json.dumps(
                    {
                        FUNCTION: {
                            "AWS_ENDPOINT_URL_SSM": endpoint.endpoint,
                            "DOCKER_TLS_RESPONSE_CA_BUNDLE": f"{CA_MOUNT}/{receiver.ca_file.name}",
                            "LOG_LEVEL": "INFO",
                        }
                    }
                ),
                encoding="utf-8",
            )
            arguments = (
                *("--template", str(build_dir / "template.yaml"), "--env-vars", str(env_vars)),
                *("--region", REGION, *overrides, *image_args),
            )
            yield LocalLambda(
                sam,
                receiver,
                endpoint.endpoint,
                architecture,
                image.name if image else f"{AWS_REGISTRY}/lambda/python:3.13-{architecture}",
                origin,
                engine.image_size(image.name) if image else None,
                version,
                work,
                build_dir,
                built.seconds,
                arguments,
            )


def run(
    *,
    venv: Path = DEFAULT_VENV,
    image_choice: str = "auto",
    rebuild_image: bool = False,
    note: Callable[[str], None] = lambda _: None,
) -> Report:
    """Build, invoke the four events in the runtime container, and judge each response."""
    with local_lambda(
        venv=venv, image_choice=image_choice, rebuild_image=rebuild_image, note=note
    ) as function:
        steps = _invoke_all(function, note)
    return Report(
        function.architecture,
        function.image,
        function.image_origin,
        function.image_bytes,
        function.sam_version,
        function.build_seconds,
        steps,
    )


def _invoke_all(function: LocalLambda, note: Callable[[str], None]) -> list[Step]:
    import boto3

    state: dict[str, Any] = {}
    steps: list[Step] = []
    client = boto3.client("ssm", region_name=REGION)
    for name in STEPS:
        step = Step(name, EVENTS / f"{name}.json")
        event = json.loads(step.event.read_text(encoding="utf-8"))
        event["ResponseURL"] = function.receiver.url()
        state["prefix"] = BundleNames.for_rack(event["ResourceProperties"]["Rack"]).prefix
        names = BundleNames(state["prefix"])
        sent = function.work / "events" / step.event.name
        sent.parent.mkdir(parents=True, exist_ok=True)
        sent.write_text(json.dumps(event), encoding="utf-8")
        note(f"sam local invoke {FUNCTION} -e {step.event.relative_to(ROOT)}")
        arguments = ["local", "invoke", FUNCTION, "-e", str(sent), *function.invoke_arguments]
        with ticking(note, f"sam local invoke ({name}; the first starts a container)"):
            result = function.sam.run(arguments, log=function.work / "logs" / f"{name}.log")
        step.seconds = result.seconds
        responses = function.receiver.responses(event["ResponseURL"])
        if len(responses) != 1:
            step.verdict = f"{len(responses)} responses (SAM exited {result.returncode})"
            steps.append(step)
            continue
        step.response = responses[0]
        step.status = str(step.response.get("Status"))

        def stored(names: BundleNames = names) -> dict[str, str]:
            found = client.get_parameters(Names=list(names.everything), WithDecryption=True)
            return {p["Name"]: p["Value"] for p in found["Parameters"]}

        step.passed, step.verdict = _judge(name, step.response, state, stored)
        problem = _log_problem(result.output, state.get("secret"))
        if problem:
            step.passed, step.verdict = False, f"{step.verdict}; {problem}"
        steps.append(step)
    return steps


def table(report: Report) -> str:
    """The short table ``make sam-local`` prints."""
    size = f", {report.image_bytes / 1e6:.0f} MB" if report.image_bytes else ""
    lines = [
        f"{report.sam_version}; runtime image {report.image} ({report.image_origin}{size}); "
        f"{report.architecture}; sam build {report.build_seconds:.1f} s",
        "",
        f"{'step':8} {'event':20} {'response':9} {'seconds':>7}  verdict",
    ]
    for step in report.steps:
        mark = "ok" if step.passed else "FAIL"
        lines.append(
            f"{step.name:8} {step.event.relative_to(ROOT)!s:20} {step.status:9} "
            f"{step.seconds:7.1f}  {mark}: {step.verdict}"
        )
    lines.append("")
    logs = WORK.relative_to(ROOT) / "logs"
    lines.append("PASSED" if report.passed else f"FAILED (SAM's output: {logs})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.sam_local",
        description="sam build, then sam local invoke the shipped events (create, update, "
        "getter, delete) in a Python 3.13 runtime container against a local SSM endpoint.",
    )
    parser.add_argument(
        "--image",
        choices=("auto", "aws", "debian"),
        default="auto",
        help="the runtime image: AWS's (pulled), a stand-in built from Debian packages, or "
        "auto (AWS's when public.ecr.aws resolves)",
    )
    parser.add_argument(
        "--rebuild-image", action="store_true", help="build the Debian stand-in even if present"
    )
    parser.add_argument("--sam-venv", type=Path, default=DEFAULT_VENV, help="SAM CLI's venv")
    args = parser.parse_args(argv)
    out = out or sys.stdout

    def note(text: str) -> None:
        print(f"sam-local: {text}", file=sys.stderr, flush=True)

    try:
        report = run(
            venv=args.sam_venv,
            image_choice=args.image,
            rebuild_image=args.rebuild_image,
            note=note,
        )
    except (LocalRunError, SamError, EngineError, ImageBuildError) as error:
        print(f"sam-local: {error}", file=sys.stderr)
        return 2
    print(table(report), file=out)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
