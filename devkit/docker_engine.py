"""A Docker engine to run Lambda containers on: the caller's own, or a private one.

``sam local invoke`` needs an engine. On a workstation that is the one already running
(``DOCKER_HOST``, or ``/var/run/docker.sock``); on a machine where none runs (these machines, CI)
it is a private ``dockerd`` (:mod:`devkit.dockerd`) whose data root outlives the run, so an image
built once is found again next time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from devkit.dockerd import DaemonStartError, clean_env, dockerd_available, private_dockerd

SYSTEM_SOCKET = Path("/var/run/docker.sock")


class EngineError(RuntimeError):
    """No engine could be found or started, or a docker command failed."""


@dataclass(frozen=True)
class Engine:
    """An engine reached at ``host`` (a ``DOCKER_HOST`` value) through the docker CLI."""

    host: str
    private: bool  # started by us for this run

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment whose docker clients (CLI, docker-py) reach this engine only."""
        return clean_env({"DOCKER_HOST": self.host, **(extra or {})})

    def docker(
        self, *args: str, stdin: int | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against this engine; raises :class:`EngineError` on failure."""
        cli = shutil.which("docker", path=self.env()["PATH"])
        if cli is None:
            raise EngineError("the docker CLI is not installed (Debian package docker.io)")
        result = subprocess.run(
            [cli, *args],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env(),
        )
        if result.returncode != 0:
            raise EngineError(f"docker {' '.join(args[:2])} failed: {result.stderr.strip()[-800:]}")
        return result

    def image_labels(self, name: str) -> dict[str, str] | None:
        """The labels of local image ``name``, or None when there is no such image."""
        try:
            shown = self.docker("image", "inspect", "--format", "{{json .Config.Labels}}", name)
        except EngineError:
            return None
        labels = json.loads(shown.stdout or "null")
        return dict(labels or {})

    def image_size(self, name: str) -> int:
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", name).stdout)


def _answers(socket_path: Path) -> bool:
    """Whether a Docker API answers ``GET /_ping`` on a unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            sock.connect(str(socket_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
            return status_line.startswith(b"HTTP/1.") and b" 200 " in status_line + b" "
    except OSError:
        return False


def default_data_root() -> Path:
    """Where a private engine keeps images between runs."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "docker-tls" / "docker"


@contextlib.contextmanager
def docker_engine(data_root: Path | None = None) -> Iterator[Engine]:
    """The caller's engine when one is configured or answers on the system socket, else a
    private dockerd (root and Debian's docker.io needed) with ``data_root`` kept between runs."""
    configured = os.environ.get("DOCKER_HOST")
    if configured:
        yield Engine(configured, private=False)
        return
    if SYSTEM_SOCKET.exists() and _answers(SYSTEM_SOCKET):
        yield Engine(f"unix://{SYSTEM_SOCKET}", private=False)
        return
    if not dockerd_available():
        raise EngineError(
            "no Docker engine: set DOCKER_HOST or start Docker, or run as root with dockerd "
            "installed (Debian package docker.io) so a private one can be started"
        )
    try:
        with private_dockerd(data_root=data_root or default_data_root()) as daemon:
            yield Engine(daemon.docker_host, private=True)
    except DaemonStartError as error:
        raise EngineError(f"could not start a private dockerd: {error}") from None
