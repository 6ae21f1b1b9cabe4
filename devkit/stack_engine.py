"""A CloudFormation engine someone else wrote, on 127.0.0.1: MiniStack, started and stopped.

MiniStack (PyPI ``ministack``, pinned in the Makefile) emulates AWS on one local endpoint; its
CloudFormation invokes a custom resource's ``ServiceToken`` Lambda, waits for the response PUT,
sends Update with ``OldResourceProperties``, rolls a failed update back and deletes a replaced
resource in the cleanup phase. Its Lambdas are subprocesses of its own interpreter, so it lives
in a Python 3.13 virtualenv of its own (``make engine``: ``.venv-engine``); this module only
starts it, never installs it.

The engine gets a port and a state directory of its own, no Docker (``DOCKER_HOST`` points
nowhere, so Lambdas run as local subprocesses) and its own session, so stopping it stops the
Lambda workers it started as well. Clients reach it with fake credentials.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from devkit.loopback import LOOPBACK, free_port

ROOT = Path(__file__).resolve().parent.parent
ENGINE_VENV = ROOT / ".venv-engine"
REGION = "us-east-1"
ACCOUNT = "000000000000"  # MiniStack's default account id
_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class EngineError(RuntimeError):
    """The engine is not installed, or did not come up."""


@dataclass(frozen=True)
class StackEngine:
    """A running engine: its endpoint, and where its output goes."""

    url: str
    log: Path
    process_group: int  # the engine's session: it and every Lambda worker it started

    def client(self, service: str) -> Any:
        """A boto3 client of ``service`` that talks to the engine only."""
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.url,
            region_name=REGION,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
            **_CREDENTIALS,
        )

    def log_tail(self, lines: int = 30) -> str:
        """The end of the engine's output, for a failure message (it holds no key material:
        the function's own log lines are redacted where they are made)."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def missing(venv: Path = ENGINE_VENV) -> str | None:
    """Why the engine cannot be started here, or None."""
    if not (venv / "bin" / "ministack").is_file():
        return f"no CloudFormation engine in {venv.name} (make engine)"
    return None


def _environment(port: int, state: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "MINISTACK_", "LOCALSTACK_")) and key != "VIRTUAL_ENV"
    }
    env.update(
        {
            "BIND_HOST": LOOPBACK,
            "GATEWAY_PORT": str(port),
            "MINISTACK_HOST": LOOPBACK,
            "MINISTACK_REGION": REGION,
            # Lambdas as subprocesses of the engine's Python 3.13, never containers.
            "LAMBDA_EXECUTOR": "local",
            "DOCKER_HOST": "unix:///nonexistent",
            "PERSIST_STATE": "0",
            "STATE_DIR": str(state / "state"),
            "TMPDIR": str(state / "tmp"),
            "LOG_LEVEL": "WARNING",
            # What the function's boto3 gets unless the engine overrides it: never real AWS.
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
    )
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_ministack/health", timeout=2) as response:  # noqa: S310
            json.load(response)
            return bool(response.status == 200)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the engine, then every process left in its session (its Lambda workers)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # The workers were the engine's children: once it is gone, init reaps them, which takes a
    # moment after SIGKILL. Stopped means gone, so wait for the session to be empty.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


@contextmanager
def stack_engine(
    state: Path, *, venv: Path = ENGINE_VENV, timeout: float = 60.0
) -> Iterator[StackEngine]:
    """Start the engine on a free 127.0.0.1 port with its state under ``state``; stop it (and
    its Lambda subprocesses) on exit."""
    reason = missing(venv)
    if reason:
        raise EngineError(reason)
    state.mkdir(parents=True, exist_ok=True)
    (state / "tmp").mkdir(exist_ok=True)
    log = state / "ministack.log"
    for _attempt in range(3):  # a free port can be taken before the engine binds it
        port = free_port()
        url = f"http://{LOOPBACK}:{port}"
        with log.open("ab") as handle:
            process = subprocess.Popen(
                [str(venv / "bin" / "ministack")],
                cwd=state,
                env=_environment(port, state),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                if _healthy(url):
                    break
                time.sleep(0.1)
            else:
                if process.poll() is None:
                    raise EngineError(
                        f"the engine did not answer {url}/_ministack/health in {timeout:.0f} s"
                    )
                continue  # it exited: most likely the port; try another
            yield StackEngine(url, log, process.pid)
            return
        finally:
            _stop(process)
    raise EngineError(
        f"the engine exited at start three times; see {log}:\n" + StackEngine("", log, 0).log_tail()
    )
