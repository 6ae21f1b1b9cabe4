"""The AWS SAM CLI, run offline against local stand-ins.

SAM is installed in a virtualenv of its own (``make sam-cli``: ``.venv-sam``), never in the
project's, and always started through :mod:`devkit.sam_host_network` so its Lambda containers
share the host's loopback. Its environment keeps it off AWS: fake credentials, STS answered by
the local endpoint (SAM calls GetCallerIdentity before every invoke; offline that is ~9 s of
retries), telemetry off, and no profile, config or credentials file of the caller's.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devkit.docker_engine import Engine

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / ".venv-sam"
LAUNCHER = Path(__file__).resolve().parent / "sam_host_network.py"
REGION = "us-east-1"

_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    # The caller's profile and files must not be read (an SSO profile would be used otherwise).
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


class SamError(RuntimeError):
    """SAM is missing or one of its commands failed before the function ran."""


@dataclass(frozen=True)
class SamRun:
    """One finished SAM command: its exit code (which says little; see below) and output."""

    returncode: int
    output: str
    seconds: float


@dataclass(frozen=True)
class SamCli:
    """``sam`` from the virtualenv ``venv``, reaching ``engine`` and a local AWS endpoint."""

    venv: Path
    engine: Engine
    endpoint: str  # the local SSM/STS endpoint (moto's server on 127.0.0.1)
    ca_dir: Path | None = None  # mounted in Lambda containers (the receiver's CA)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self) -> dict[str, str]:
        extra: dict[str, str] = {
            **_FAKE_AWS,
            "AWS_ENDPOINT_URL_STS": self.endpoint,
            "SAM_CLI_TELEMETRY": "0",
        }
        if self.ca_dir is not None:
            extra["DOCKER_TLS_SAM_CA_DIR"] = str(self.ca_dir)
        env = self.engine.env(extra)
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
            env.pop(name, None)
        env.pop("AWS_ENDPOINT_URL_SSM", None)  # the function gets it through --env-vars only
        return env

    def check(self) -> str:
        """SAM's version line; :class:`SamError` when the virtualenv lacks it."""
        if not self.python.is_file():
            raise SamError(f"no SAM CLI in {self.venv}: run `make sam-cli` first")
        return self.run(["--version"], timeout=120).output.strip()

    def run(
        self,
        arguments: Sequence[str],
        *,
        timeout: float = 600,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> SamRun:
        """Run ``sam ARGUMENTS`` in the repository. Its exit code is 0 even when the function's
        container failed or timed out: judge a run by what the function did, not by this."""
        started = time.monotonic()
        try:
            result = subprocess.run(
                [str(self.python), str(LAUNCHER), *arguments],
                cwd=ROOT,
                env={**self.env(), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise SamError(f"sam {' '.join(arguments[:2])} ran over {timeout:.0f} s") from error
        seconds = time.monotonic() - started
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(result.stdout, encoding="utf-8")
        return SamRun(result.returncode, result.stdout, seconds)

    def popen(self, arguments: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start a long-running ``sam`` command (``local start-lambda``), output to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as handle:
            return subprocess.Popen(
                [str(self.python), str(LAUNCHER), *arguments],
                cwd=ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
