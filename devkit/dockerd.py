"""A private Docker engine: ``dockerd`` started as root with its own socket, exec root, pidfile
and log in one short directory, and stopped cleanly with its managed containerd.

It runs as these machines (and CI) allow: ``--iptables=false --bridge=none --storage-driver=vfs``,
no network of its own, listening on a unix socket in its directory and, when asked, on
``tcp://127.0.0.1:PORT`` with ``--tlsverify``. The TLS peer tests use the TCP listener to prove a
bundle with real peers; ``make sam-local`` uses the socket to run Lambda containers, with a data
root that outlives the run so the runtime image is built once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devkit.loopback import LOOPBACK, accepts, free_port

# dockerd and its managed containerd look up containerd/runc via PATH; make sure sbin dirs are in.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables that would redirect the docker CLI / dockerd away from what a caller asked for.
_PROXY_VARS = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy"})
_LOG_TAIL_LINES = 40
# The TLS files a TCP listener is started with, looked up in the daemon's directory.
TLS_FILES = ("ca.pem", "server-cert.pem", "server-key.pem")


class DaemonStartError(RuntimeError):
    """dockerd exited or never announced its API; the message carries the daemon log tail."""


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment minus DOCKER_* and proxy variables, with a system PATH."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith("DOCKER_") and key.lower() not in _PROXY_VARS
    }
    env["PATH"] = SYSTEM_PATH
    if extra:
        env.update(extra)
    return env


def dockerd_path() -> str | None:
    """Absolute path of ``dockerd`` (PATH plus the sbin dirs), or None if not installed."""
    return shutil.which("dockerd", path=os.environ.get("PATH", "") + ":" + SYSTEM_PATH)


def dockerd_available() -> bool:
    """True when a private daemon can be started: ``dockerd`` is installed and we are root."""
    return dockerd_path() is not None and os.geteuid() == 0


@dataclass
class Daemon:
    """A running private dockerd. ``log_text()`` stays usable after it stopped."""

    pid: int
    directory: Path
    log_path: Path
    port: int | None = None  # the --tlsverify TCP listener's, when started with one
    containerd_pid: int | None = None
    _final_log: str | None = field(default=None, repr=False)

    @property
    def tcp_url(self) -> str:
        """The ``-H`` value of the TLS listener."""
        if self.port is None:
            raise ValueError("this daemon has no TCP listener")
        return f"tcp://{LOOPBACK}:{self.port}"

    @property
    def unix_socket(self) -> Path:
        """The daemon's private, TLS-free unix socket."""
        return self.directory / "docker.sock"

    @property
    def docker_host(self) -> str:
        """``DOCKER_HOST`` for clients of the unix socket."""
        return f"unix://{self.unix_socket}"

    def log_text(self, since: int = 0) -> str:
        """The daemon's combined stdout/stderr log, from offset ``since``.

        Pass ``len(d.log_text())`` taken before an action to see only what it caused: the
        daemon log is where the *reason* for a rejected client shows up.
        """
        if self._final_log is not None:
            return self._final_log[since:]
        try:
            return self.log_path.read_text(errors="replace")[since:]
        except OSError:
            return ""


def redacted_tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    """Last ``lines`` lines of a log, dropping anything that could look like key material."""
    kept = [
        line
        for line in text.splitlines()
        if "PRIVATE KEY" not in line and not line.startswith("MI")
    ]
    return "\n".join(kept[-lines:])


def _command(binary: str, directory: Path, data_root: Path, port: int | None) -> list[str]:
    """The dockerd argv: everything private to ``directory`` (and ``data_root``)."""
    argv = [binary]
    if port is not None:
        ca, cert, key = (directory / name for name in TLS_FILES)
        argv += [
            "--tlsverify",
            f"--tlscacert={ca}",
            f"--tlscert={cert}",
            f"--tlskey={key}",
            "-H",
            f"tcp://{LOOPBACK}:{port}",
        ]
    return [
        *argv,
        "-H",
        f"unix://{directory / 'docker.sock'}",
        "--data-root",
        str(data_root),
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


def _read_containerd_pid(directory: Path) -> int | None:
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
        # It runs in its own session, so its PGID is its PID: the caller's group is never hit.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _stop_containerd(pid: int | None, directory: Path, stop_timeout: float) -> None:
    """Make sure the managed containerd (own process group) died with dockerd.

    dockerd normally stops it on SIGTERM; after a SIGKILL of dockerd it may linger. The PID is
    only signalled while its command line still mentions our directory (no PID-reuse accidents).
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
    """Lazily unmount anything dockerd left mounted below ``directory``."""
    for point in _mounts_under(directory):
        subprocess.run(
            ["umount", "--lazy", point],
            check=False,
            capture_output=True,
            timeout=10,
            env=clean_env(),
        )


def _start(
    binary: str,
    directory: Path,
    data_root: Path,
    log_path: Path,
    *,
    tls_listener: bool,
    start_timeout: float,
) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start dockerd and wait until its API is up; with a TCP listener, retry a port race."""
    last_error = "dockerd did not start"
    for _attempt in range(3):
        port = free_port() if tls_listener else None
        with log_path.open("ab") as log_fh:
            proc = subprocess.Popen(
                _command(binary, directory, data_root, port),
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                cwd=directory,
                start_new_session=True,  # own session + process group: killpg never hits us
            )
        try:
            listener = f"{LOOPBACK}:{port}" if port is not None else str(directory / "docker.sock")
            marker = f"API listen on {listener}"
            started = time.monotonic()
            deadline = started + start_timeout
            while time.monotonic() < deadline:
                if marker in log_path.read_text(errors="replace"):
                    return proc, port
                if proc.poll() is not None:
                    break
                # Fallback for a dockerd that words its log differently; checked sparingly
                # because every probe makes the daemon log a TLS handshake error.
                if port is not None and time.monotonic() - started > 3 and accepts(port):
                    return proc, port
                time.sleep(0.05)
            log = log_path.read_text(errors="replace")
            if proc.poll() is None:
                last_error = f"dockerd (pid {proc.pid}) did not listen within {start_timeout}s"
            else:
                last_error = f"dockerd exited with status {proc.returncode}"
            _stop_process(proc, stop_timeout=10)
            _stop_containerd(_read_containerd_pid(directory), directory, stop_timeout=5)
            if port is None or "address already in use" not in log:
                break
        except BaseException:
            _stop_process(proc, stop_timeout=10)
            raise
    raise DaemonStartError(
        f"{last_error}; daemon log tail:\n{redacted_tail(log_path.read_text(errors='replace'))}"
    )


@contextlib.contextmanager
def private_dockerd(
    *,
    files: Mapping[str, bytes] | None = None,
    tls_listener: bool = False,
    data_root: Path | None = None,
    start_timeout: float = 30.0,
    stop_timeout: float = 20.0,
) -> Iterator[Daemon]:
    """Run a private ``dockerd`` as root and stop it on exit, also when the body raises.

    The daemon gets a new 0700 /tmp/dtls-* directory (socket, exec root, pidfile, log; short,
    as unix socket paths are limited to ~108 bytes) holding ``files`` (mode 0600). With
    ``tls_listener`` it also serves ``--tlsverify`` on a free loopback port with the directory's
    ``ca.pem``, ``server-cert.pem`` and ``server-key.pem``. ``data_root`` (images, containers)
    defaults to a subdirectory removed with the rest; pass one to keep images between runs.

    On exit the daemon is stopped by its own PID (SIGTERM, wait ``stop_timeout``, then SIGKILL
    of its process group), its managed containerd is checked, leftover mounts are lazily
    unmounted and the directory is removed. Raises :class:`DaemonStartError` with the log tail
    if it does not come up.
    """
    binary = dockerd_path()
    if binary is None:
        raise DaemonStartError("dockerd is not installed (Debian package docker.io)")
    if os.geteuid() != 0:
        raise DaemonStartError("a private dockerd needs root")
    directory = Path(tempfile.mkdtemp(prefix="dtls-", dir="/tmp"))
    log_path = directory / "dockerd.log"
    proc: subprocess.Popen[bytes] | None = None
    daemon: Daemon | None = None
    try:
        for name, data in (files or {}).items():
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        root = data_root or directory / "root"
        root.mkdir(parents=True, exist_ok=True)
        proc, port = _start(
            binary,
            directory,
            root,
            log_path,
            tls_listener=tls_listener,
            start_timeout=start_timeout,
        )
        daemon = Daemon(
            pid=proc.pid,
            directory=directory,
            log_path=log_path,
            port=port,
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
        if data_root is not None:
            _unmount_all(data_root)
        shutil.rmtree(directory, ignore_errors=True)
