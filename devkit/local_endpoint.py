"""A local SSM endpoint that lasts: moto's server on 127.0.0.1 in the background, its
parameters kept on disk, one endpoint for every local command.

    python -m devkit.local_endpoint start    # make local-ssm: start (or find) it, print its env
    python -m devkit.local_endpoint env      # the env of the running one
    python -m devkit.local_endpoint stop     # make local-ssm-stop

``start`` prints ``export …`` lines on stdout (``eval "$(make -s local-ssm)"``) and notes on
stderr. With that environment, ``docker-tls`` (plan, inspect, export), ``make invoke`` and
``make demo`` all use this endpoint, so a bundle created once is seen by every later command;
``docker-tls --local`` starts it when it is not running. The state directory
(``~/.cache/docker-tls/local-ssm``, or ``DOCKER_TLS_LOCAL_SSM_DIR``) holds the server's pid,
port and log, and ``parameters.json`` (mode 0600: it holds the private keys), written within a
second of each change and read back when the endpoint starts again.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from devkit.loopback import accepts
from docker_tls_cli import calm

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

    from handler.store import ParameterStore

DEFAULT_PORT = 4599
REGION = "us-east-1"
STATE_DIR_ENV = "DOCKER_TLS_LOCAL_SSM_DIR"
PORT_ENV = "DOCKER_TLS_LOCAL_SSM_PORT"
SNAPSHOT_SECONDS = 1.0


class EndpointError(RuntimeError):
    """The endpoint could not be started or found."""


@dataclass(frozen=True)
class Endpoint:
    """A running lasting endpoint."""

    port: int
    pid: int
    state_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """What a shell (or a process) needs to use it, and nothing of the caller's AWS."""
        return {
            "AWS_ENDPOINT_URL_SSM": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }


def state_dir() -> Path:
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "docker-tls" / "local-ssm"


def _port() -> int:
    return int(os.environ.get(PORT_ENV) or DEFAULT_PORT)


def _answers(port: int) -> bool:
    import urllib.request

    url = f"http://127.0.0.1:{port}/moto-api/"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def running(directory: Path | None = None) -> Endpoint | None:
    """The endpoint started from ``directory``, if it still runs and answers."""
    directory = directory or state_dir()
    try:
        recorded = json.loads((directory / "server.json").read_text(encoding="utf-8"))
        pid, port = int(recorded["pid"]), int(recorded["port"])
    except (OSError, ValueError, KeyError):
        return None
    if not _alive(pid):
        return None
    return Endpoint(port, pid, directory) if _answers(port) else None


def start(directory: Path | None = None, port: int | None = None) -> tuple[Endpoint, bool]:
    """The running endpoint, started in the background if need be; True when just started."""
    directory = directory or state_dir()
    found = running(directory)
    if found is not None:
        return found, False
    if importlib.util.find_spec("moto") is None:
        raise EndpointError(
            "the local endpoint needs the development extras: pip install -e '.[dev]'"
        )
    port = port or _port()
    if accepts(port):
        what = "answers" if _answers(port) else "is taken by something that does not answer"
        raise EndpointError(
            f"127.0.0.1:{port} {what}, but it is not the endpoint of {directory}: "
            f"stop it, or pick another port with {PORT_ENV}=<port>"
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = (directory / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "devkit.local_endpoint", "serve", "--port", str(port)],
        env={**os.environ, STATE_DIR_ENV: str(directory)},
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # outlives the command that started it
    )
    log.close()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            found = running(directory)
            if found is not None:
                return found, True
            if process.poll() is not None:
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        # Ctrl-C while it starts: a server nobody will be told about must not keep running.
        process.terminate()
        process.wait(timeout=10)
        raise
    process.terminate()
    lines = (directory / "server.log").read_text(errors="replace").strip().splitlines()
    last = lines[-1] if lines else "no output"
    raise EndpointError(
        f"the local SSM endpoint did not start on port {port} within 30 s ({last}); "
        f"the whole log is {directory / 'server.log'}"
    )


STOP_SECONDS = 15


def stop(directory: Path | None = None) -> Endpoint | None:
    """Stop the endpoint (its state is written on the way out); None when none was running.
    Raises :class:`EndpointError` when it is still running after ``STOP_SECONDS``."""
    found = running(directory or state_dir())
    if found is None:
        return None
    os.kill(found.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline and _alive(found.pid):
        time.sleep(0.1)
    if _alive(found.pid):
        raise EndpointError(
            f"the endpoint {found.url} (pid {found.pid}) is still running {STOP_SECONDS} s after "
            f"SIGTERM: kill {found.pid}"
        )
    return found


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # ours (started by this process): reap it
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


# --- the server process ---------------------------------------------------------------------


def _client(port: int) -> Any:
    import boto3

    return boto3.client(
        "ssm",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (moto's fake credentials)
    )


def snapshot(client: Any) -> dict[str, dict[str, Any]]:
    """Every parameter the endpoint holds, decrypted, with what a put needs to restore it."""
    described: dict[str, dict[str, Any]] = {}
    for page in client.get_paginator("describe_parameters").paginate():
        for item in page["Parameters"]:
            described[item["Name"]] = item
    names = sorted(described)
    state: dict[str, dict[str, Any]] = {}
    for start_at in range(0, len(names), 10):
        found = client.get_parameters(Names=names[start_at : start_at + 10], WithDecryption=True)
        for item in found["Parameters"]:
            meta = described[item["Name"]]
            entry = {"Type": item["Type"], "Value": item["Value"], "Tier": meta.get("Tier")}
            if meta.get("KeyId"):
                entry["KeyId"] = meta["KeyId"]
            state[item["Name"]] = {k: v for k, v in entry.items() if v}
    return state


def restore(client: Any, state: dict[str, dict[str, Any]]) -> None:
    for name, entry in state.items():
        client.put_parameter(Name=name, Overwrite=True, **entry)


def _write_state(path: Path, state: dict[str, dict[str, Any]]) -> None:
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(temporary, path)


def serve(port: int, directory: Path) -> None:
    """Run moto's server until SIGTERM/SIGINT, restoring and then keeping ``parameters.json``."""
    from moto.server import ThreadedMotoServer

    from devkit import ssm_rules

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    ssm_rules.install()  # SSM's rules that moto lacks, in this server process too
    saved_path = directory / "parameters.json"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = _client(port)
    saved: dict[str, dict[str, Any]] = {}
    if saved_path.exists():
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        with ssm_rules.unchecked_here():  # its own saved state, whatever wrote it
            restore(client, saved)
    # moto loads its SSM backend on the first SSM call (seconds on a busy machine): pay that
    # here, before anyone is told the endpoint is up, not in a client's short read timeout.
    client.get_parameters(Names=["docker-tls-warm-up"])
    (directory / "server.json").write_text(
        json.dumps({"pid": os.getpid(), "port": port}), encoding="utf-8"
    )
    print(f"local SSM endpoint on 127.0.0.1:{port}, {len(saved)} parameters restored", flush=True)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    while True:
        stopping = done.wait(SNAPSHOT_SECONDS)
        current = snapshot(client)
        if current != saved:
            _write_state(saved_path, current)
            saved = current
        if stopping:
            break
    server.stop()
    with contextlib.suppress(OSError):
        (directory / "server.json").unlink()


# --- command line ---------------------------------------------------------------------------


def exports(endpoint: Endpoint) -> str:
    return "\n".join(
        f"export {name}={shlex.quote(value)}" for name, value in endpoint.environment().items()
    )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    chosen_out = out or sys.stdout
    return calm.calmly("local-ssm", lambda: _main(argv, chosen_out), chosen_out)


def _main(argv: Sequence[str] | None, out: TextIO) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.local_endpoint",
        description="A local SSM endpoint (moto) that stays up and keeps its parameters.",
    )
    parser.add_argument("command", choices=("start", "env", "stop", "serve"))
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)

    def note(text: str) -> None:
        print(f"local-ssm: {text}", file=sys.stderr)

    directory = state_dir()
    if args.command == "serve":
        serve(args.port or _port(), directory)
        return 0
    if args.command == "stop":
        try:
            stopped = stop(directory)
        except EndpointError as error:
            note(str(error))
            return 1
        note(f"stopped {stopped.url}; parameters kept in {directory}" if stopped else "not running")
        return 0
    if args.command == "env":
        found = running(directory)
        if found is None:
            note("not running: make local-ssm starts it")
            return 1
        print(exports(found), file=out)
        return 0
    try:
        endpoint, started = start(directory, args.port)
    except EndpointError as error:
        note(str(error))
        return 1
    note(
        f"{'started' if started else 'already running:'} {endpoint.url} (pid {endpoint.pid}), "
        f"parameters kept in {directory}; make local-ssm-stop stops it"
    )
    note('use it in this shell with: eval "$(make -s local-ssm)"')
    print(exports(endpoint), file=out)
    return 0


def store(
    note: Callable[[str], None], make_client: Callable[[], SSMClient] | None = None
) -> ParameterStore:
    """A parameter store on the endpoint, started if need be. The client is made (by
    ``make_client``, else with the Lambda's retry and timeout settings) under the endpoint's
    environment, which is then put back: the caller's own environment is left as it was."""
    from handler.store import ParameterStore, default_client

    endpoint, started = start()
    note(
        f"the local SSM endpoint {endpoint.url} ({'started; ' if started else ''}it lasts: "
        "make local-ssm-stop stops it)"
    )
    with applied(endpoint):
        client = (make_client or default_client)()
    return ParameterStore(client)


@contextlib.contextmanager
def applied(endpoint: Endpoint) -> Iterator[Endpoint]:
    """This process's environment pointed at ``endpoint`` (and at no AWS profile) inside the
    block; the caller's own environment is put back afterwards."""
    names = (*endpoint.environment(), "AWS_PROFILE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(endpoint.environment())
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


if __name__ == "__main__":
    sys.exit(main())
