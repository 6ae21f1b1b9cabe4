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
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from devkit.dockerd import (
    TLS_FILES,
    Daemon,
    DaemonStartError,
    clean_env,
    dockerd_available,
    dockerd_path,
    private_dockerd,
)
from devkit.loopback import LOOPBACK

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


# --------------------------------------------------------------------------------------------
# Availability probes
# --------------------------------------------------------------------------------------------


def docker_cli_available() -> bool:
    """True when the docker CLI used by :func:`docker_cli` is present and executable."""
    return os.access(DOCKER_CLI, os.X_OK)


# --------------------------------------------------------------------------------------------
# A real dockerd with --tlsverify on loopback
# --------------------------------------------------------------------------------------------


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

    :func:`devkit.dockerd.private_dockerd` with a TLS listener: a private /tmp/dtls-* dir, a
    free loopback port, its own process group, stopped and cleaned up on exit, also when the
    body raises. Requires root (see :func:`dockerd_available`); raises
    :class:`DaemonStartError` with the daemon log tail if it does not come up.
    """
    ca, cert, key = TLS_FILES
    with private_dockerd(
        files={ca: ca_pem, cert: server_cert_pem, key: server_key_pem},
        tls_listener=True,
        start_timeout=start_timeout,
        stop_timeout=stop_timeout,
    ) as daemon:
        yield daemon


# --------------------------------------------------------------------------------------------
# The docker CLI
# --------------------------------------------------------------------------------------------


def docker_cli(
    port: int,
    *args: str,
    ca_pem: bytes | None,
    cert_pem: bytes | None,
    key_pem: bytes | None,
    host: str = LOOPBACK,
    verify_server: bool = True,
    timeout: float = 30,
    resolve: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``docker -H tcp://HOST:PORT <TLS flags> ARGS...`` and capture its output.

    TLS flags: ``--tlsverify --tlscacert`` when ``verify_server`` (``ca_pem`` required), else
    ``--tls --tlscacert`` with ``ca_pem`` or, if None, the system bundle as a placeholder (the
    CLI insists on a parseable CA file but does not verify the server in ``--tls`` mode);
    ``--tlscert/--tlskey`` only when ``cert_pem`` is given. The CLI gets an empty private
    ``DOCKER_CONFIG`` (so it never reads ~/.docker or default cert paths) and an environment
    without DOCKER_* and proxy variables.
    Never raises on a nonzero exit; raises ``subprocess.TimeoutExpired`` after ``timeout``.

    ``resolve`` (name -> address) makes names resolvable for this one run, the way an
    instance's private DNS name resolves inside a VPC: the CLI runs in a mount namespace of
    its own (``unshare --mount``) with a hosts file bound over /etc/hosts. The machine's own
    /etc/hosts is never touched. Needs root.
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
        if resolve:
            hosts = _write_private(
                tmp / "hosts",
                "".join(f"{address} {name}\n" for name, address in resolve.items()).encode(),
                mode=0o644,
            )
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"',
                str(hosts),
                *argv,
            ]
        return subprocess.run(
            argv,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=clean_env({"DOCKER_CONFIG": str(config_dir), "HOME": str(tmp)}),
            cwd=tmp,
        )


def docker_version(
    port: int,
    *,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    host: str = LOOPBACK,
    resolve: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``docker --tlsverify version`` against the daemon on ``port``: the server's version on
    stdout when both sides accepted each other (see :func:`docker_cli`)."""
    return docker_cli(
        port,
        "version",
        "--format",
        "{{.Server.Version}}",
        ca_pem=ca_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        host=host,
        resolve=resolve,
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
            env=clean_env(),
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
            listener.bind((LOOPBACK, 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            thread = threading.Thread(target=serve, name="mtls-server", daemon=True)
            thread.start()
            try:
                raw = socket.create_connection((LOOPBACK, port), timeout=timeout)
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


# --------------------------------------------------------------------------------------------
# An OpenSSL-based client of a real daemon (Python's ssl)
# --------------------------------------------------------------------------------------------


def openssl_client_ping(
    port: int,
    *,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    server_hostname: str = LOOPBACK,
    timeout: float = 10,
) -> str | None:
    """``GET /_ping`` over mutual TLS to a daemon on 127.0.0.1, as an OpenSSL-based client (an
    API server in Python, curl) would make it: the daemon verified against ``ca_pem`` (which
    may hold several CAs) and ``server_hostname``, the client certificate presented. Returns
    None when the daemon answered 200, else what went wrong."""
    with _private_tmpdir("ossl-client-") as tmp:
        paths = _write_pems(tmp, {"cert.pem": cert_pem, "key.pem": key_pem})
        context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
        context.load_cert_chain(paths["cert.pem"], paths["key.pem"])
        try:
            with (
                socket.create_connection((LOOPBACK, port), timeout=timeout) as raw,
                context.wrap_socket(raw, server_hostname=server_hostname) as conn,
            ):
                conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                status = conn.recv(64).split(b"\r\n", 1)[0]
        except (OSError, ssl.SSLError) as error:
            return _describe(error)
    return None if b" 200 " in status + b" " else f"daemon answered {status!r}"
