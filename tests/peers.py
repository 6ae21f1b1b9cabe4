"""Real TLS peers for tests: a live dockerd, the docker CLI, ``openssl verify`` and Python ``ssl``.

Why: a certificate bundle that merely parses is not proof that Docker accepts it. Go's
``crypto/x509`` (docker CLI and dockerd), OpenSSL and Python's ``ssl`` each apply their own rules
(SANs, EKU, BasicConstraints, KeyUsage), so tests hand the generated PEMs to real peers and check
both the happy path and the rejections.

Everything here takes plain PEM ``bytes`` (``ca_pem``, ``cert_pem``, ``key_pem``); decoding them
from SSM is the caller's business. Only loopback (127.0.0.1 / localhost) is ever used. Private
key material is written only to private (0700) temp dirs with mode 0600 and is never echoed into
logs or exception messages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "DOCKER_CLI",
    "Daemon",
    "DaemonStartError",
    "HandshakeResult",
    "docker_cli",
    "docker_cli_available",
    "dockerd_available",
    "dockerd_path",
    "openssl_verify",
    "python_mtls_handshake",
    "running_dockerd",
]

#: The modern (Go 1.24) docker CLI preinstalled on the CI image; Debian's /usr/bin/docker is older.
# The modern CLI (Go 1.24) preinstalled here; Debian's docker.io CLI (20.10) otherwise, so a
# machine with only what .ci/run installs still runs the daemon tests instead of skipping them.
DOCKER_CLI = (
    "/usr/local/bin/docker"
    if os.access("/usr/local/bin/docker", os.X_OK)
    else shutil.which("docker") or "/usr/bin/docker"
)

_LOOPBACK = "127.0.0.1"
# dockerd and its managed containerd look up containerd/runc via PATH; make sure sbin dirs are in.
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables that would redirect the docker CLI / dockerd away from what a test asked for.
_PROXY_VARS = frozenset(
    {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"},
)
_LOG_TAIL_LINES = 40
# Only a parseable placeholder for the docker CLI's --tls mode (see docker_cli); never trusted.
_SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


# --------------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Create ``path`` with ``mode`` from the start (no window where a key is world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def _write_pems(directory: Path, files: Mapping[str, bytes | None]) -> dict[str, Path]:
    """Write each non-None PEM into ``directory`` (0600) and return name -> path."""
    return {
        name: _write_private(directory / name, data)
        for name, data in files.items()
        if data is not None
    }


@contextlib.contextmanager
def _private_tmpdir(prefix: str) -> Iterator[Path]:
    """A short-named 0700 dir under /tmp (short: unix socket paths are limited to ~108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment minus DOCKER_* and proxy variables, with a system PATH."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith("DOCKER_") and key.lower() not in _PROXY_VARS
    }
    env["PATH"] = _SYSTEM_PATH
    if extra:
        env.update(extra)
    return env


def _free_loopback_port() -> int:
    """Ask the kernel for a currently free TCP port on 127.0.0.1 (racy but good enough)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _redacted_tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    """Last ``lines`` lines of a log, dropping anything that could look like key material."""
    kept = [
        line
        for line in text.splitlines()
        if "PRIVATE KEY" not in line and not line.startswith("MI")
    ]
    return "\n".join(kept[-lines:])


def _pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # Field 3 (after the parenthesised comm, which may contain spaces) is the state.
    state = stat.rpartition(")")[2].split()[0]
    return state not in {"Z", "X"}


def _pid_cmdline(pid: int) -> str:
    """The NUL-separated command line of ``pid`` joined by spaces, or '' if unavailable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory`` (deepest first), from /proc/self/mountinfo."""
    prefix = str(directory).rstrip("/") + "/"
    points: list[str] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return points
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")
            if point == prefix.rstrip("/") or point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)


# --------------------------------------------------------------------------------------------
# Availability probes
# --------------------------------------------------------------------------------------------


def dockerd_path() -> str | None:
    """Absolute path of ``dockerd`` (PATH plus the sbin dirs), or None if not installed."""
    return shutil.which("dockerd", path=os.environ.get("PATH", "") + ":" + _SYSTEM_PATH)


def dockerd_available() -> bool:
    """True when a real daemon can be started: ``dockerd`` is installed and we are root.

    Tests marked ``dockerd`` should skip (not fail) when this is False, e.g. on a laptop.
    """
    return dockerd_path() is not None and os.geteuid() == 0


def docker_cli_available() -> bool:
    """True when the docker CLI used by :func:`docker_cli` is present and executable."""
    return os.access(DOCKER_CLI, os.X_OK)


# --------------------------------------------------------------------------------------------
# A real dockerd with --tlsverify on loopback
# --------------------------------------------------------------------------------------------


class DaemonStartError(RuntimeError):
    """dockerd exited or never announced its API; the message carries the daemon log tail."""


@dataclass
class Daemon:
    """A running dockerd listening with ``--tlsverify`` on ``tcp://127.0.0.1:port``.

    ``log_text()`` stays usable after the context exits (the log is snapshotted on stop).
    """

    port: int
    pid: int
    directory: Path
    log_path: Path
    containerd_pid: int | None = None
    _final_log: str | None = field(default=None, repr=False)

    @property
    def tcp_url(self) -> str:
        """The ``-H`` value for the TLS listener."""
        return f"tcp://{_LOOPBACK}:{self.port}"

    @property
    def unix_socket(self) -> Path:
        """The daemon's private, TLS-free unix socket (handy for setup steps)."""
        return self.directory / "docker.sock"

    def log_text(self, since: int = 0) -> str:
        """The daemon's combined stdout/stderr log (dockerd logs to stderr), from offset ``since``.

        Pass ``len(d.log_text())`` taken before an action to see only what it caused; the
        daemon log is where the *reason* for a rejected client shows up (e.g. "x509: certificate
        specifies an incompatible key usage"), while the CLI often only sees "bad certificate"
        or even a bare "connection reset by peer".
        """
        if self._final_log is not None:
            return self._final_log[since:]
        try:
            return self.log_path.read_text(errors="replace")[since:]
        except OSError:
            return ""


def _dockerd_command(binary: str, directory: Path, port: int) -> list[str]:
    """The dockerd argv: mTLS on loopback, everything else private to ``directory``."""
    return [
        binary,
        "--tlsverify",
        f"--tlscacert={directory / 'ca.pem'}",
        f"--tlscert={directory / 'server-cert.pem'}",
        f"--tlskey={directory / 'server-key.pem'}",
        "-H",
        f"tcp://{_LOOPBACK}:{port}",
        "-H",
        f"unix://{directory / 'docker.sock'}",
        "--data-root",
        str(directory / "root"),
        "--exec-root",
        str(directory / "exec"),
        "--pidfile",
        str(directory / "docker.pid"),
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
        "--storage-driver=vfs",
    ]


def _port_accepts(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((_LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _read_containerd_pid(directory: Path) -> int | None:
    """PID of the daemon-managed containerd, if dockerd has written its pidfile yet."""
    try:
        return int((directory / "exec" / "containerd" / "containerd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _stop_process(proc: subprocess.Popen[bytes], stop_timeout: float) -> None:
    """SIGTERM ``proc`` by its own PID, wait, then SIGKILL its whole process group if needed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=stop_timeout)
    if proc.poll() is None:
        # It runs in its own session, so its PGID is its PID: pytest's group is never hit.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _stop_containerd(pid: int | None, directory: Path, stop_timeout: float) -> None:
    """Make sure the managed containerd (own process group) died with dockerd.

    dockerd normally stops it on SIGTERM; after a SIGKILL of dockerd it may linger. The PID is
    only signalled while its command line still mentions our private dir (no PID-reuse accidents).
    """
    if pid is None:
        return
    deadline = time.monotonic() + stop_timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        if str(directory) not in _pid_cmdline(pid):
            return
        time.sleep(0.05)
    if _pid_alive(pid) and str(directory) in _pid_cmdline(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _unmount_all(directory: Path) -> None:
    """Lazily unmount anything dockerd left mounted below ``directory`` before deleting it."""
    for point in _mounts_under(directory):
        subprocess.run(
            ["umount", "--lazy", point],
            check=False,
            capture_output=True,
            timeout=10,
            env=_clean_env(),
        )


def _start_dockerd(
    binary: str, directory: Path, log_path: Path, start_timeout: float
) -> tuple[subprocess.Popen[bytes], int]:
    """Start dockerd on a free port and wait until its TLS API is up; retry on a port race."""
    last_error = "dockerd did not start"
    for _attempt in range(3):
        port = _free_loopback_port()
        with log_path.open("ab") as log_fh:
            proc = subprocess.Popen(
                _dockerd_command(binary, directory, port),
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
                cwd=directory,
                start_new_session=True,  # own session + process group: killpg never hits pytest
            )
        try:
            marker = f"API listen on {_LOOPBACK}:{port}"
            started = time.monotonic()
            deadline = started + start_timeout
            while time.monotonic() < deadline:
                if marker in log_path.read_text(errors="replace"):
                    return proc, port
                if proc.poll() is not None:
                    break
                # Fallback for a dockerd that words its log differently; checked sparingly
                # because every probe makes the daemon log a TLS handshake error.
                if time.monotonic() - started > 3 and _port_accepts(port):
                    return proc, port
                time.sleep(0.05)
            log = log_path.read_text(errors="replace")
            if proc.poll() is None:
                last_error = f"dockerd (pid {proc.pid}) did not listen within {start_timeout}s"
            else:
                last_error = f"dockerd exited with status {proc.returncode}"
            _stop_process(proc, stop_timeout=10)
            _stop_containerd(_read_containerd_pid(directory), directory, stop_timeout=5)
            if "address already in use" not in log:
                break
        except BaseException:
            _stop_process(proc, stop_timeout=10)
            raise
    raise DaemonStartError(
        f"{last_error}; daemon log tail:\n{_redacted_tail(log_path.read_text(errors='replace'))}"
    )


@contextlib.contextmanager
def running_dockerd(
    ca_pem: bytes,
    server_cert_pem: bytes,
    server_key_pem: bytes,
    *,
    start_timeout: float = 30.0,
    stop_timeout: float = 20.0,
) -> Iterator[Daemon]:
    """Run a real ``dockerd --tlsverify`` on 127.0.0.1 with the given CA and server cert/key.

    The daemon gets a private /tmp/dtls-* dir (certs, data-root, exec-root, pidfile, unix
    socket, log), a free loopback port, and its own process group. On exit -- also when the
    body raises -- it is stopped by its own PID (SIGTERM, wait ``stop_timeout``, then SIGKILL
    of its process group), its managed containerd is checked, leftover mounts are lazily
    unmounted and the dir is removed. Requires root (see :func:`dockerd_available`).

    Raises :class:`DaemonStartError` with the daemon log tail if it does not come up.
    """
    binary = dockerd_path()
    if binary is None:
        raise DaemonStartError("dockerd is not installed")
    directory = Path(tempfile.mkdtemp(prefix="dtls-", dir="/tmp"))
    log_path = directory / "dockerd.log"
    proc: subprocess.Popen[bytes] | None = None
    daemon: Daemon | None = None
    try:
        _write_pems(
            directory,
            {
                "ca.pem": ca_pem,
                "server-cert.pem": server_cert_pem,
                "server-key.pem": server_key_pem,
            },
        )
        proc, port = _start_dockerd(binary, directory, log_path, start_timeout)
        daemon = Daemon(
            port=port,
            pid=proc.pid,
            directory=directory,
            log_path=log_path,
            containerd_pid=_read_containerd_pid(directory),
        )
        yield daemon
    finally:
        containerd_pid = _read_containerd_pid(directory)
        if daemon is not None and daemon.containerd_pid is not None:
            containerd_pid = daemon.containerd_pid
        if proc is not None:
            _stop_process(proc, stop_timeout)
        _stop_containerd(containerd_pid, directory, stop_timeout)
        if daemon is not None:
            daemon._final_log = daemon.log_text()
        _unmount_all(directory)
        shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The docker CLI
# --------------------------------------------------------------------------------------------


def docker_cli(
    port: int,
    *args: str,
    ca_pem: bytes | None,
    cert_pem: bytes | None,
    key_pem: bytes | None,
    host: str = _LOOPBACK,
    verify_server: bool = True,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Run ``docker -H tcp://HOST:PORT <TLS flags> ARGS...`` and capture its output.

    TLS flags: ``--tlsverify --tlscacert`` when ``verify_server`` (``ca_pem`` required), else
    ``--tls --tlscacert`` with ``ca_pem`` or, if None, the system bundle as a placeholder (the
    CLI insists on a parseable CA file but does not verify the server in ``--tls`` mode);
    ``--tlscert/--tlskey`` only when ``cert_pem`` is given. The CLI gets an empty private
    ``DOCKER_CONFIG`` (so it never reads ~/.docker or default cert paths) and an environment
    without DOCKER_* and proxy variables.
    Never raises on a nonzero exit; raises ``subprocess.TimeoutExpired`` after ``timeout``.
    """
    if verify_server and ca_pem is None:
        raise ValueError("verify_server=True needs ca_pem")
    if (cert_pem is None) != (key_pem is None):
        raise ValueError("cert_pem and key_pem go together")
    with _private_tmpdir("dcli-") as tmp:
        config_dir = tmp / "config"
        certs_dir = tmp / "certs"  # separate from DOCKER_CONFIG so no default path finds them
        config_dir.mkdir(mode=0o700)
        certs_dir.mkdir(mode=0o700)
        paths = _write_pems(
            certs_dir,
            {
                "ca.pem": ca_pem,
                "cert.pem": cert_pem,
                "key.pem": key_pem,
            },
        )
        argv = [DOCKER_CLI, "-H", f"tcp://{host}:{port}"]
        if verify_server:
            argv += ["--tlsverify", f"--tlscacert={paths['ca.pem']}"]
        else:
            # CLI 28 reads and parses a CA file even with --tls (else "open .../ca.pem: no such
            # file" / "ca.pem seems invalid") but then skips verification, so any valid bundle
            # will do; the system bundle keeps "no CA given" meaning "no CA given".
            ca_file = paths.get("ca.pem", _SYSTEM_CA_BUNDLE)
            if not Path(ca_file).is_file():
                raise ValueError(f"verify_server=False needs ca_pem when {ca_file} is missing")
            argv += ["--tls", f"--tlscacert={ca_file}"]
        if "cert.pem" in paths:
            argv += [f"--tlscert={paths['cert.pem']}", f"--tlskey={paths['key.pem']}"]
        argv += list(args)
        return subprocess.run(
            argv,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=_clean_env({"DOCKER_CONFIG": str(config_dir), "HOME": str(tmp)}),
            cwd=tmp,
        )


# --------------------------------------------------------------------------------------------
# OpenSSL
# --------------------------------------------------------------------------------------------


def openssl_verify(
    ca_pem: bytes,
    cert_pem: bytes,
    purpose: Literal["sslserver", "sslclient"],
    *,
    host: str | None = None,
    ip: str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """``openssl verify -x509_strict -purpose PURPOSE -CAfile ca [-verify_hostname] [-verify_ip]``.

    The CA is the only trust anchor (``-no-CApath -no-CAstore`` keep the system store out).
    Success is ``returncode == 0`` and ``": OK"`` in stdout; failures explain themselves in
    stderr (e.g. "unsuitable certificate purpose", "hostname mismatch").

    Caveat: ``-verify_hostname`` falls back to the subject CN when the cert has *no* DNS SAN
    (Go ignores the CN), and the CLI has no switch to turn that off. Use the docker CLI or
    :func:`python_mtls_handshake` to prove a name is in the SANs.
    """
    if purpose not in ("sslserver", "sslclient"):
        raise ValueError(f"unsupported purpose {purpose!r}")
    with _private_tmpdir("ossl-") as tmp:
        paths = _write_pems(tmp, {"ca.pem": ca_pem, "cert.pem": cert_pem})
        argv = [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            purpose,
            "-no-CApath",
            "-no-CAstore",
            "-CAfile",
            str(paths["ca.pem"]),
        ]
        if host is not None:
            argv += ["-verify_hostname", host]
        if ip is not None:
            argv += ["-verify_ip", ip]
        argv.append(str(paths["cert.pem"]))
        return subprocess.run(
            argv,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=_clean_env(),
        )


# --------------------------------------------------------------------------------------------
# Python ssl (OpenSSL) mutual-TLS handshake
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeResult:
    """Outcome of :func:`python_mtls_handshake`, one verdict and error text per side.

    A side succeeds only if its handshake completed *and* one application-data round trip
    worked: with TLS 1.3 the client finishes its handshake before the server has judged the
    client certificate, so the client only learns of a rejection (alert) on its first read.
    """

    server_ok: bool
    client_ok: bool
    server_error: str | None
    client_error: str | None
    tls_version: str | None = None

    @property
    def ok(self) -> bool:
        """Both sides authenticated each other and exchanged data."""
        return self.server_ok and self.client_ok


_PING = b"ping\n"
_PONG = b"pong\n"


def _describe(exc: BaseException) -> str:
    """Compact error text, e.g. ``SSLCertVerificationError: [SSL: ...] certificate verify ...``."""
    return f"{type(exc).__name__}: {exc}"


def _recv_exact(conn: ssl.SSLSocket, size: int) -> bytes:
    """Read up to ``size`` bytes, stopping early at EOF."""
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _linger_close(conn: ssl.SSLSocket, timeout: float) -> None:
    """After a TLS failure: half-close and drain so the peer reads our alert, not a reset.

    Closing a socket that still has unread input makes the kernel send RST, and an RST can
    destroy the alert the peer has not read yet (it then reports a bare EOF instead of, say,
    "tlsv13 alert certificate required"). ``SSLSocket.shutdown`` drops the TLS layer, so the
    drain reads raw bytes.
    """
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(min(timeout, 2.0))
        while conn.recv(4096):
            pass


def python_mtls_handshake(
    ca_pem: bytes,
    server_cert_pem: bytes,
    server_key_pem: bytes,
    client_cert_pem: bytes | None,
    client_key_pem: bytes | None,
    *,
    server_hostname: str = "localhost",
    timeout: float = 10,
    maximum_version: ssl.TLSVersion | None = None,
) -> HandshakeResult:
    """Mutual TLS between a Python ``ssl`` server and client on 127.0.0.1, both trusting only CA.

    The server (a thread on a free port) uses ``CERT_REQUIRED``; the client checks the server
    chain and ``server_hostname`` (a DNS name or an IP literal; SANs only, the CN is never used,
    as in Go) and presents the client cert if given. Typical failure texts: server "certificate
    verify failed" / "peer did not return a certificate"; client "tlsv13 alert certificate
    required" / "alert unknown ca". Every socket operation is bounded by ``timeout`` and the
    server thread is always joined.
    ``maximum_version`` (e.g. ``ssl.TLSVersion.TLSv1_2``) caps both sides.
    """
    if (client_cert_pem is None) != (client_key_pem is None):
        raise ValueError("client_cert_pem and client_key_pem go together")
    with _private_tmpdir("pyssl-") as tmp:
        paths = _write_pems(
            tmp,
            {
                "server-cert.pem": server_cert_pem,
                "server-key.pem": server_key_pem,
                "cert.pem": client_cert_pem,
                "key.pem": client_key_pem,
            },
        )
        cadata = ca_pem.decode("ascii")

        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        server_ctx.load_verify_locations(cadata=cadata)
        server_ctx.load_cert_chain(paths["server-cert.pem"], paths["server-key.pem"])

        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
        # Like Go (docker CLI): only SANs count. OpenSSL would otherwise match the subject CN
        # when the cert has no DNS SAN, hiding a cert that Docker clients reject.
        client_ctx.hostname_checks_common_name = False
        client_ctx.load_verify_locations(cadata=cadata)
        if "cert.pem" in paths:
            client_ctx.load_cert_chain(paths["cert.pem"], paths["key.pem"])
        if maximum_version is not None:
            server_ctx.maximum_version = maximum_version
            client_ctx.maximum_version = maximum_version

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.settimeout(timeout)
        server_outcome: dict[str, str | None] = {"error": "server never ran"}

        def serve() -> None:
            try:
                raw, _addr = listener.accept()
            except OSError as exc:
                server_outcome["error"] = _describe(exc)
                return
            raw.settimeout(timeout)
            conn = server_ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            try:
                conn.do_handshake()
                if _recv_exact(conn, len(_PING)) != _PING:
                    raise ConnectionError("client sent no ping")
                conn.sendall(_PONG)
                server_outcome["error"] = None
            except Exception as exc:
                server_outcome["error"] = _describe(exc)
                _linger_close(conn, timeout)
            finally:
                conn.close()

        client_error: str | None = None
        tls_version: str | None = None
        try:
            listener.bind((_LOOPBACK, 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            thread = threading.Thread(target=serve, name="mtls-server", daemon=True)
            thread.start()
            try:
                raw = socket.create_connection((_LOOPBACK, port), timeout=timeout)
                conn = client_ctx.wrap_socket(
                    raw, server_hostname=server_hostname, do_handshake_on_connect=False
                )
                try:
                    conn.do_handshake()
                    tls_version = conn.version()
                    conn.sendall(_PING)
                    if _recv_exact(conn, len(_PONG)) != _PONG:
                        raise ConnectionError("server closed without answering")
                except Exception:
                    _linger_close(conn, timeout)
                    raise
                finally:
                    conn.close()
            except Exception as exc:
                client_error = _describe(exc)
            finally:
                thread.join(timeout + 5)
        finally:
            listener.close()
        if thread.is_alive():  # pragma: no cover - bounded by socket timeouts above
            server_outcome["error"] = "server thread did not finish"
        server_error = server_outcome["error"]
        return HandshakeResult(
            server_ok=server_error is None,
            client_ok=client_error is None,
            server_error=server_error,
            client_error=client_error,
            tls_version=tls_version,
        )
