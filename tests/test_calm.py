"""No traceback reaches an operator: every operator-facing command, run as a real process,
meets a reader that closed the pipe, Ctrl-C in the middle of a request, a socket that accepts
and never answers, and no endpoint at all (docker_tls_cli/calm.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devkit import local_endpoint
from devkit.loopback import LOOPBACK, accepts, free_port
from docker_tls_cli import calm
from handler.ensure import ensure
from handler.properties import parse_generator
from handler.store import ParameterStore

# Every test starts processes: the full run only.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
RACK = "calm-rack"
LOCAL_HINT = 'eval "$(make -s local-ssm)"'
#: The CLI's longest wait for a silent endpoint is about 3 x 3 s + 3 s of back-off.
SILENT_BOUND = 25.0

_EXPORT = ["export", "--rack", RACK, "--host", "localhost", "--dir", "{dir}"]
#: Every docker-tls subcommand (export also in its --env-only mode), with its arguments.
CLI_COMMANDS: dict[str, list[str]] = {
    "plan": ["plan", "--rack", RACK],
    "inspect": ["inspect", "--rack", RACK],
    "export": _EXPORT,
    "export-env-only": [*_EXPORT, "--env-only"],
}
EVENTS = ["create", "update", "delete", "getter"]


@dataclass
class Silent:
    """A TCP socket on 127.0.0.1 that accepts every connection and never answers."""

    port: int
    accepted: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


@pytest.fixture
def silent() -> Iterator[Silent]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(16)
    listener.settimeout(0.2)
    found = Silent(int(listener.getsockname()[1]))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(connection)  # kept open, never read, never answered
            found.accepted.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


def _environment(endpoint: str | None, **more: str) -> dict[str, str]:
    """The test's environment without any real AWS: fake keys, a region, and ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE="/nonexistent/config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/credentials",
        AWS_EC2_METADATA_DISABLED="true",
        **more,
    )
    if endpoint is not None:
        env["AWS_ENDPOINT_URL_SSM"] = endpoint
    return env


def _cli(name: str, directory: Path) -> list[str]:
    argv = [part.replace("{dir}", str(directory)) for part in CLI_COMMANDS[name]]
    return [sys.executable, "-m", "docker_tls_cli", *argv]


def _invoke(event: str) -> list[str]:
    return [sys.executable, "-m", "devkit.invoke", str(ROOT / "events" / f"{event}.json")]


def _run(argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, str, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        argv, capture_output=True, text=True, env=dict(env), cwd=ROOT, timeout=90, check=False
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def _calm(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "Error:" not in stderr  # a bare exception's last line (BrokenPipeError: …)
    assert "Exception ignored" not in stderr


#: Execs its arguments with SIGINT at its default, as a shell at a terminal starts a command.
#: A suite started in the background (``bash -c 'make test &'``) inherits SIGINT ignored, and a
#: Python started that way never raises KeyboardInterrupt: Ctrl-C would test nothing.
_AS_AT_A_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _interrupt(argv: Sequence[str], env: Mapping[str, str], ready: threading.Event) -> str:
    """Start ``argv`` as from a terminal, send SIGINT once ``ready`` (the request is in
    flight); its stderr."""
    process = subprocess.Popen(
        [sys.executable, "-c", _AS_AT_A_TERMINAL, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
        cwd=ROOT,
    )
    try:
        assert ready.wait(30), "the request never reached the socket"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == calm.EXIT_INTERRUPTED, stderr
    return stderr


def _closed_pipe(argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, str]:
    """Run ``argv`` with a stdout whose reader is already gone (``cmd | true``, after true
    exited): its exit code and stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            argv,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env),
            cwd=ROOT,
            timeout=90,
            check=False,
        )
    finally:
        os.close(write_end)
    return done.returncode, done.stderr


# --- docker-tls ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLI_COMMANDS)
def test_cli_without_an_endpoint_says_one_line_naming_it(name: str, tmp_path: Path) -> None:
    url = f"http://{LOOPBACK}:{free_port()}"
    code, out, err, _ = _run(_cli(name, tmp_path / "d"), _environment(url))
    assert code == calm.EXIT_UNREACHABLE, err
    assert out == ("false  # docker-tls export failed (exit 6)\n" if "export" in name else "")
    _calm(err)
    assert len(err.splitlines()) == 1, err
    assert f"the SSM endpoint {url} refuses connections" in err
    assert LOCAL_HINT in err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("name", CLI_COMMANDS)
def test_cli_reports_a_silent_endpoint_within_seconds(
    name: str, tmp_path: Path, silent: Silent
) -> None:
    code, _, err, took = _run(_cli(name, tmp_path / "d"), _environment(silent.url))
    assert code == calm.EXIT_UNREACHABLE, err
    assert took < SILENT_BOUND
    _calm(err)
    lines = err.splitlines()
    assert [line for line in lines if "retrying" in line] == [
        f"docker-tls: the SSM endpoint {silent.url} accepted the connection but did not answer "
        f"within {calm.READ_TIMEOUT} s; retrying (attempt {n} of {calm.ATTEMPTS})"
        for n in range(2, calm.ATTEMPTS + 1)
    ]
    assert f"{silent.url} accepted the connection but did not answer" in lines[-1]
    assert LOCAL_HINT in lines[-1]


@pytest.mark.parametrize("name", CLI_COMMANDS)
def test_cli_ctrl_c_mid_request_is_one_line_and_130(
    name: str, tmp_path: Path, silent: Silent
) -> None:
    err = _interrupt(_cli(name, tmp_path / "d"), _environment(silent.url), silent.accepted)
    _calm(err)
    assert err.strip() == "docker-tls: interrupted"


@pytest.fixture
def served_bundle() -> Iterator[str]:
    """moto's SSM server on 127.0.0.1 holding a healthy bundle for RACK; yields its URL."""
    from devkit.ssm_server import local_ssm

    with local_ssm() as endpoint:
        now = dt.datetime.now(dt.UTC)
        ensure(ParameterStore(), parse_generator({"Rack": RACK}, now), rotate=False, now=now)
        yield endpoint.endpoint


@pytest.mark.parametrize("name", CLI_COMMANDS)
def test_cli_meets_a_closed_pipe_quietly(name: str, tmp_path: Path, served_bundle: str) -> None:
    env = _environment(served_bundle)
    directory = tmp_path / "d"
    if name == "export-env-only":
        code, _, err, _ = _run(_cli("export", directory), env)
        assert code == 0, err
    code, err = _closed_pipe(_cli(name, directory), env)
    assert code == calm.EXIT_BROKEN_PIPE, err
    _calm(err)
    if name.startswith("export"):
        assert (directory / "key.pem").is_file()  # the files were written before stdout


# --- make invoke ------------------------------------------------------------------------------


@pytest.mark.parametrize("event", EVENTS)
def test_invoke_without_an_endpoint_says_one_line_for_every_event(event: str) -> None:
    url = f"http://{LOOPBACK}:{free_port()}"
    code, out, err, _ = _run(_invoke(event), _environment(url))
    assert code == calm.EXIT_UNREACHABLE, err
    _calm(err)
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert f"the SSM endpoint {url} refuses connections" in err
    assert LOCAL_HINT in err
    assert "permissions" not in err


@pytest.mark.parametrize("event", EVENTS)
def test_invoke_reports_a_silent_endpoint_within_seconds(event: str, silent: Silent) -> None:
    code, out, err, took = _run(_invoke(event), _environment(silent.url))
    assert code == calm.EXIT_UNREACHABLE, err
    assert took < SILENT_BOUND
    _calm(err)
    assert out == ""
    lines = err.splitlines()
    assert len([line for line in lines if "retrying" in line]) == calm.ATTEMPTS - 1
    assert f"{silent.url} accepted the connection but did not answer" in lines[-1]


@pytest.mark.parametrize("event", EVENTS)
def test_invoke_ctrl_c_mid_request_is_one_line_and_130(event: str, silent: Silent) -> None:
    err = _interrupt(_invoke(event), _environment(silent.url), silent.accepted)
    _calm(err)
    assert err.strip() == "invoke: interrupted"


@pytest.mark.parametrize("event", EVENTS)
def test_invoke_meets_a_closed_pipe_quietly(event: str) -> None:
    code, err = _closed_pipe(_invoke(event), _environment(None))  # the embedded endpoint
    assert code == calm.EXIT_BROKEN_PIPE, err
    _calm(err)


def test_invoke_explains_a_reason_of_an_endpoint_that_never_answered() -> None:
    from devkit.invoke import explain

    reason = (
        "SSM GetParameters failed (EndpointConnectionError): Could not connect to the endpoint "
        "URL. The SSM endpoint did not answer (network, VPC endpoint or AWS_ENDPOINT_URL_SSM). "
        "Nothing was regenerated or lost: retry."
    )
    said = explain({"Status": "FAILED", "Reason": reason})
    assert said is not None and "refuses connections" in said
    assert explain({"Status": "FAILED", "Reason": "SSM failed (AccessDeniedException)"}) is None
    assert explain({"Status": "SUCCESS", "Reason": reason}) is None


# --- make local-ssm, make local-ssm-stop ------------------------------------------------------


def _local(command: str) -> list[str]:
    return [sys.executable, "-m", "devkit.local_endpoint", command]


def _local_env(directory: Path, port: int) -> dict[str, str]:
    return _environment(
        None,
        **{local_endpoint.STATE_DIR_ENV: str(directory), local_endpoint.PORT_ENV: str(port)},
    )


def test_local_ssm_start_and_env_meet_a_closed_pipe_quietly(tmp_path: Path) -> None:
    directory, port = tmp_path / "local-ssm", free_port()
    env = _local_env(directory, port)
    try:
        for command in ("start", "env"):
            code, err = _closed_pipe(_local(command), env)
            assert code == calm.EXIT_BROKEN_PIPE, err
            _calm(err)
        assert local_endpoint.running(directory) is not None  # started all the same
    finally:
        local_endpoint.stop(directory)


def test_local_ssm_on_a_port_that_never_answers_is_one_line(tmp_path: Path, silent: Silent) -> None:
    directory = tmp_path / "local-ssm"
    code, out, err, took = _run(_local("start"), _local_env(directory, silent.port))
    assert code == 1
    assert took < SILENT_BOUND
    _calm(err)
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert f"127.0.0.1:{silent.port} is taken by something that does not answer" in err
    assert local_endpoint.PORT_ENV in err


def test_local_ssm_ctrl_c_while_starting_leaves_nothing_running(tmp_path: Path) -> None:
    directory, port = tmp_path / "local-ssm", free_port()
    spawned = threading.Event()

    def watch() -> None:  # the server process exists once its log does
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (directory / "server.log").exists():
            time.sleep(0.02)
        spawned.set()

    threading.Thread(target=watch, daemon=True).start()
    err = _interrupt(_local("start"), _local_env(directory, port), spawned)
    _calm(err)
    assert err.strip() == "local-ssm: interrupted"
    time.sleep(1)
    assert local_endpoint.running(directory) is None
    assert not accepts(port)


class _MotoApi(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # answers the liveness check as the endpoint does
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


@dataclass
class Stubborn:
    """An endpoint's recorded pid and port that answer the liveness check, but whose process
    ignores SIGTERM: ``stop`` waits for it in vain."""

    directory: Path
    port: int
    pid: int


@pytest.fixture
def stubborn(tmp_path: Path) -> Iterator[Stubborn]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    server = ThreadingHTTPServer((LOOPBACK, 0), _MotoApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    directory = tmp_path / "local-ssm"
    directory.mkdir()
    port = int(server.server_address[1])
    (directory / "server.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    try:
        yield Stubborn(directory, port, process.pid)
    finally:
        process.kill()
        process.communicate()
        server.shutdown()
        server.server_close()


def test_local_ssm_stop_says_so_when_the_endpoint_outlives_sigterm(
    stubborn: Stubborn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(local_endpoint.STATE_DIR_ENV, str(stubborn.directory))
    monkeypatch.setattr(local_endpoint, "STOP_SECONDS", 1)
    assert local_endpoint.main(["stop"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        f"local-ssm: the endpoint http://127.0.0.1:{stubborn.port} (pid {stubborn.pid}) is still "
        f"running 1 s after SIGTERM: kill {stubborn.pid}"
    )


def test_local_ssm_stop_ctrl_c_while_waiting_is_one_line_and_130(stubborn: Stubborn) -> None:
    """An endpoint that ignores SIGTERM keeps ``stop`` waiting; Ctrl-C there ends calmly."""
    directory, port = stubborn.directory, stubborn.port
    waiting = threading.Event()
    threading.Timer(3.0, waiting.set).start()  # well inside the 15 s stop waits
    err = _interrupt(_local("stop"), _local_env(directory, port), waiting)
    _calm(err)
    assert err.strip() == "local-ssm: interrupted"


def test_the_one_line_says_what_to_run_for_a_local_or_a_remote_endpoint() -> None:
    local = calm.unreachable("ReadTimeoutError", "http://127.0.0.1:4599")
    assert local is not None and LOCAL_HINT in local
    remote = calm.unreachable("ConnectTimeoutError", "https://ssm.eu-west-1.amazonaws.com")
    assert remote is not None
    assert remote.startswith("the SSM endpoint https://ssm.eu-west-1.amazonaws.com did not accept")
    assert "the region (AWS_DEFAULT_REGION)" in remote and "make -s local-ssm" not in remote
    assert calm.unreachable("AccessDeniedException", "http://127.0.0.1:4599") is None


def test_only_stdouts_broken_pipe_ends_quietly() -> None:
    """A broken pipe from elsewhere (a socket) while stdout's reader is still there is a fault
    to show, not a reader that went away."""

    def broken() -> int:
        raise BrokenPipeError("a socket's")

    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as out:
        with pytest.raises(BrokenPipeError):
            calm.calmly("test", broken, out)
        os.close(read_end)
        assert calm.calmly("test", broken, out) == calm.EXIT_BROKEN_PIPE
