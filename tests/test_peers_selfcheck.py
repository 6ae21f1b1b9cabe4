"""Self-test of tests/peers.py against throwaway certificates made here with ``cryptography``.

Why: the peers are the yardstick for the real bundle, so they must themselves be shown to
accept a good mTLS set and to reject a foreign client cert, a missing client cert, the wrong
EKU and a name missing from the server SANs. Keys are ECDSA P-256 (fast).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.peers import (
    Daemon,
    DaemonStartError,
    docker_cli,
    docker_cli_available,
    dockerd_available,
    openssl_verify,
    python_mtls_handshake,
    running_dockerd,
)

# ------------------------------------------------------------------------------------------
# Throwaway PKI
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """One certificate with its key, as PEM bytes, plus what is needed to sign with it."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(cn: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def make_leaf(
    ca: Issued,
    cn: str,
    eku: x509.ObjectIdentifier,
    sans: Sequence[x509.GeneralName] = (),
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


LOCALHOST_SANS = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
)


@dataclass(frozen=True)
class Pki:
    ca: Issued
    server: Issued
    server_ip_only: Issued
    client: Issued
    foreign_ca: Issued
    foreign_client: Issued


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = make_ca("selfcheck CA")
    foreign_ca = make_ca("foreign CA")
    return Pki(
        ca=ca,
        server=make_leaf(ca, "server", ExtendedKeyUsageOID.SERVER_AUTH, LOCALHOST_SANS),
        server_ip_only=make_leaf(
            ca,
            "localhost",  # a CN Go must ignore: only the SANs count
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ),
        client=make_leaf(
            ca, "client", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("docker-client")]
        ),
        foreign_ca=foreign_ca,
        foreign_client=make_leaf(foreign_ca, "intruder", ExtendedKeyUsageOID.CLIENT_AUTH),
    )


# ------------------------------------------------------------------------------------------
# openssl verify
# ------------------------------------------------------------------------------------------


def test_openssl_server_cert_for_server_purpose(pki: Pki) -> None:
    res = openssl_verify(
        pki.ca.cert_pem, pki.server.cert_pem, "sslserver", host="localhost", ip="127.0.0.1"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert ": OK" in res.stdout


def test_openssl_client_cert_for_client_purpose(pki: Pki) -> None:
    res = openssl_verify(pki.ca.cert_pem, pki.client.cert_pem, "sslclient")
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(("which", "purpose"), [("server", "sslclient"), ("client", "sslserver")])
def test_openssl_wrong_purpose_fails(
    pki: Pki, which: str, purpose: Literal["sslserver", "sslclient"]
) -> None:
    leaf: Issued = getattr(pki, which)
    res = openssl_verify(pki.ca.cert_pem, leaf.cert_pem, purpose)
    assert res.returncode != 0
    assert "unsuitable certificate purpose" in res.stderr


def test_openssl_name_not_in_sans_fails(pki: Pki) -> None:
    res = openssl_verify(pki.ca.cert_pem, pki.server.cert_pem, "sslserver", host="docker.invalid")
    assert res.returncode != 0
    assert "hostname mismatch" in res.stderr


def test_openssl_ip_not_in_sans_fails(pki: Pki) -> None:
    res = openssl_verify(pki.ca.cert_pem, pki.server.cert_pem, "sslserver", ip="127.0.0.2")
    assert res.returncode != 0
    assert "IP address mismatch" in res.stderr


def test_openssl_falls_back_to_cn_without_dns_san(pki: Pki) -> None:
    """Documents a divergence: OpenSSL matches CN=localhost when no DNS SAN exists; Go does not.

    So openssl_verify(host=...) alone cannot prove a name is in the SANs (see the dockerd and
    python handshake tests for the real check).
    """
    res = openssl_verify(
        pki.ca.cert_pem, pki.server_ip_only.cert_pem, "sslserver", host="localhost"
    )
    assert res.returncode == 0, res.stderr


def test_openssl_foreign_ca_fails(pki: Pki) -> None:
    res = openssl_verify(pki.ca.cert_pem, pki.foreign_client.cert_pem, "sslclient")
    assert res.returncode != 0
    assert "unable to get local issuer certificate" in res.stdout + res.stderr


def test_openssl_trusts_only_the_given_ca(pki: Pki) -> None:
    # The foreign CA is self-signed; verifying it against our CA must not find another anchor.
    res = openssl_verify(pki.ca.cert_pem, pki.foreign_ca.cert_pem, "sslserver")
    assert res.returncode != 0


# ------------------------------------------------------------------------------------------
# Python ssl mutual TLS
# ------------------------------------------------------------------------------------------


def test_python_handshake_succeeds_with_right_client(pki: Pki) -> None:
    res = python_mtls_handshake(
        pki.ca.cert_pem,
        pki.server.cert_pem,
        pki.server.key_pem,
        pki.client.cert_pem,
        pki.client.key_pem,
    )
    assert res.ok, res
    assert res.server_error is None
    assert res.client_error is None
    assert res.tls_version == "TLSv1.3"


def test_python_handshake_by_ip_and_tls12(pki: Pki) -> None:
    import ssl

    res = python_mtls_handshake(
        pki.ca.cert_pem,
        pki.server.cert_pem,
        pki.server.key_pem,
        pki.client.cert_pem,
        pki.client.key_pem,
        server_hostname="127.0.0.1",
        maximum_version=ssl.TLSVersion.TLSv1_2,
    )
    assert res.ok, res
    assert res.tls_version == "TLSv1.2"


def test_python_handshake_rejects_foreign_client(pki: Pki) -> None:
    res = python_mtls_handshake(
        pki.ca.cert_pem,
        pki.server.cert_pem,
        pki.server.key_pem,
        pki.foreign_client.cert_pem,
        pki.foreign_client.key_pem,
    )
    assert not res.ok
    assert not res.server_ok
    assert not res.client_ok
    assert "certificate verify failed" in (res.server_error or "")
    assert "unknown ca" in (res.client_error or "")


def test_python_handshake_rejects_missing_client_cert(pki: Pki) -> None:
    res = python_mtls_handshake(
        pki.ca.cert_pem, pki.server.cert_pem, pki.server.key_pem, None, None
    )
    assert not res.server_ok
    assert not res.client_ok
    assert "peer did not return a certificate" in (res.server_error or "")
    assert "certificate required" in (res.client_error or "")


def test_python_handshake_rejects_server_name_not_in_sans(pki: Pki) -> None:
    res = python_mtls_handshake(
        pki.ca.cert_pem,
        pki.server_ip_only.cert_pem,
        pki.server_ip_only.key_pem,
        pki.client.cert_pem,
        pki.client.key_pem,
        server_hostname="localhost",
    )
    assert not res.client_ok
    assert "Hostname mismatch" in (res.client_error or "")


def test_python_handshake_rejects_server_from_foreign_ca(pki: Pki) -> None:
    foreign_server = make_leaf(
        pki.foreign_ca, "server", ExtendedKeyUsageOID.SERVER_AUTH, LOCALHOST_SANS
    )
    res = python_mtls_handshake(
        pki.ca.cert_pem,
        foreign_server.cert_pem,
        foreign_server.key_pem,
        pki.client.cert_pem,
        pki.client.key_pem,
    )
    assert not res.client_ok
    assert "certificate verify failed" in (res.client_error or "")
    assert not res.server_ok


# ------------------------------------------------------------------------------------------
# Real dockerd + docker CLI
# ------------------------------------------------------------------------------------------

needs_dockerd = pytest.mark.skipif(
    not (dockerd_available() and docker_cli_available()),
    reason="needs root, dockerd (apt docker.io) and /usr/local/bin/docker",
)

REJECTED_CLIENT = ("bad certificate", "unknown certificate authority")


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def daemon(pki: Pki) -> Iterator[Daemon]:
    if not (dockerd_available() and docker_cli_available()):
        pytest.skip("needs root, dockerd (apt docker.io) and /usr/local/bin/docker")
    started = time.monotonic()
    with running_dockerd(pki.ca.cert_pem, pki.server.cert_pem, pki.server.key_pem) as d:
        print(f"dockerd up in {time.monotonic() - started:.2f}s on port {d.port}")
        yield d
    assert _pid_gone(d.pid)


@pytest.mark.dockerd
@needs_dockerd
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_dockerd_accepts_right_client(pki: Pki, daemon: Daemon, host: str) -> None:
    res = docker_cli(
        daemon.port,
        "version",
        ca_pem=pki.ca.cert_pem,
        cert_pem=pki.client.cert_pem,
        key_pem=pki.client.key_pem,
        host=host,
    )
    assert res.returncode == 0, res.stderr
    assert "Server:" in res.stdout


@pytest.mark.dockerd
@needs_dockerd
def test_dockerd_rejects_foreign_client(pki: Pki, daemon: Daemon) -> None:
    res = docker_cli(
        daemon.port,
        "version",
        ca_pem=pki.ca.cert_pem,
        cert_pem=pki.foreign_client.cert_pem,
        key_pem=pki.foreign_client.key_pem,
    )
    assert res.returncode != 0
    assert any(text in res.stderr for text in REJECTED_CLIENT), res.stderr


@pytest.mark.dockerd
@needs_dockerd
def test_dockerd_log_explains_rejections(pki: Pki, daemon: Daemon) -> None:
    """The daemon log, not the CLI, says why. Two Go facts shown here:

    - Go's client only sends a cert issued by a CA in the server's CertificateRequest list, so
      a foreign client cert is withheld and the daemon sees "didn't provide a certificate".
    - A cert with EKU serverAuth only is refused for client auth; the CLI may then report just
      "connection reset by peer" (a race), so assert on the daemon log.
    """
    mark = len(daemon.log_text())
    res = docker_cli(
        daemon.port,
        "version",
        ca_pem=pki.ca.cert_pem,
        cert_pem=pki.foreign_client.cert_pem,
        key_pem=pki.foreign_client.key_pem,
    )
    assert res.returncode != 0
    assert "tls: client didn't provide a certificate" in daemon.log_text(mark)

    mark = len(daemon.log_text())
    res = docker_cli(
        daemon.port,
        "version",
        ca_pem=pki.ca.cert_pem,
        cert_pem=pki.server.cert_pem,
        key_pem=pki.server.key_pem,
    )
    assert res.returncode != 0
    assert "x509: certificate specifies an incompatible key usage" in daemon.log_text(mark)


@pytest.mark.dockerd
@needs_dockerd
def test_dockerd_rejects_missing_client_cert(pki: Pki, daemon: Daemon) -> None:
    res = docker_cli(daemon.port, "version", ca_pem=pki.ca.cert_pem, cert_pem=None, key_pem=None)
    assert res.returncode != 0
    assert any(text in res.stderr for text in REJECTED_CLIENT), res.stderr


@pytest.mark.dockerd
@needs_dockerd
def test_docker_cli_rejects_server_from_wrong_ca(pki: Pki, daemon: Daemon) -> None:
    res = docker_cli(
        daemon.port,
        "version",
        ca_pem=pki.foreign_ca.cert_pem,
        cert_pem=pki.client.cert_pem,
        key_pem=pki.client.key_pem,
    )
    assert res.returncode != 0
    assert "certificate signed by unknown authority" in res.stderr, res.stderr


@pytest.mark.dockerd
@needs_dockerd
def test_docker_cli_tls_without_server_verification(pki: Pki, daemon: Daemon) -> None:
    # --tls skips the server check (even a foreign CA passes) but still sends the client cert.
    for ca_pem in (pki.foreign_ca.cert_pem, None):
        res = docker_cli(
            daemon.port,
            "version",
            ca_pem=ca_pem,
            cert_pem=pki.client.cert_pem,
            key_pem=pki.client.key_pem,
            verify_server=False,
        )
        assert res.returncode == 0, res.stderr
        assert "Server:" in res.stdout


@pytest.mark.dockerd
@needs_dockerd
def test_docker_cli_tls_without_client_cert_still_rejected(pki: Pki, daemon: Daemon) -> None:
    res = docker_cli(
        daemon.port, "version", ca_pem=None, cert_pem=None, key_pem=None, verify_server=False
    )
    assert res.returncode != 0
    assert any(text in res.stderr for text in REJECTED_CLIENT), res.stderr


@pytest.mark.dockerd
@needs_dockerd
def test_dockerd_san_check_and_cleanup(pki: Pki) -> None:
    """Server cert with only IP SAN 127.0.0.1: by IP works, by "localhost" fails; then cleanup."""
    with running_dockerd(
        pki.ca.cert_pem, pki.server_ip_only.cert_pem, pki.server_ip_only.key_pem
    ) as d:

        def version(host: str) -> subprocess.CompletedProcess[str]:
            return docker_cli(
                d.port,
                "version",
                ca_pem=pki.ca.cert_pem,
                cert_pem=pki.client.cert_pem,
                key_pem=pki.client.key_pem,
                host=host,
            )

        by_ip = version("127.0.0.1")
        assert by_ip.returncode == 0, by_ip.stderr
        by_name = version("localhost")
        assert by_name.returncode != 0
        # Go 1.24 wording for a cert with IP SANs only; older Go: "is valid for 127.0.0.1, not".
        assert "x509: certificate is not valid for any names, but wanted to match localhost" in (
            by_name.stderr
        ), by_name.stderr
        pid, containerd_pid, directory = d.pid, d.containerd_pid, d.directory
        assert "API listen on 127.0.0.1:" in d.log_text()
    assert _pid_gone(pid)
    if containerd_pid is not None:
        assert _pid_gone(containerd_pid)
    assert not directory.exists()
    assert "API listen on" in d.log_text()  # snapshotted before the dir was removed


@pytest.mark.dockerd
@needs_dockerd
def test_dockerd_stopped_when_body_raises(pki: Pki) -> None:
    seen: list[Daemon] = []

    def body() -> None:
        with running_dockerd(pki.ca.cert_pem, pki.server.cert_pem, pki.server.key_pem) as d:
            seen.append(d)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        body()
    assert len(seen) == 1
    assert _pid_gone(seen[0].pid)
    assert not seen[0].directory.exists()


@pytest.mark.dockerd
@needs_dockerd
def test_dockerd_start_failure_reports_log_tail(pki: Pki) -> None:
    # Server cert with the client's key: dockerd refuses to start; the error carries its log.
    before = set(Path("/tmp").glob("dtls-*"))
    with (
        pytest.raises(DaemonStartError, match="private key does not match public key") as info,
        running_dockerd(pki.ca.cert_pem, pki.server.cert_pem, pki.client.key_pem),
    ):
        pytest.fail("dockerd must not start")
    assert "PRIVATE KEY" not in str(info.value)
    assert set(Path("/tmp").glob("dtls-*")) <= before  # its private dir was removed
