"""The bundle the handler stores, proven against the programs that consume it.

Every certificate and key used in a positive case here is made BY THE HANDLER: a CloudFormation
event goes through ``lambda_handler``, the handler writes to SSM (moto's server over real HTTP),
the response travels over HTTPS to a local receiver, and the six parameters are then read back
from SSM and base64-decoded exactly as an instance's user data does. Those PEMs go to real peers:

* a real ``dockerd --tlsverify`` on 127.0.0.1 and the real docker CLI (marker ``dockerd``);
* ``openssl verify`` with purposes ``sslserver`` / ``sslclient`` and a Python ``ssl`` mutual-TLS
  handshake (no daemon needed: ``make quick``).

The seed scenario (an instance keeps the ``/etc/ca.pem`` it wrote at boot while the stack is
updated) is replayed step by step against one daemon. Near expiry is planted in SSM with
certificates signed by the stored CA key and the *handler* does the renewal on the next Update;
the test itself never decides what gets renewed.

No private key is ever printed: the bundle's key fields are excluded from reprs, and the peers
write keys only to 0600 files in private temp dirs.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devkit import ssm_rules
from devkit.events import LambdaContext, event
from devkit.receiver import Receiver, response_receiver
from devkit.ssm_server import local_ssm
from handler import app
from handler.certificates import CertificateAuthority, KeyAlgorithm, Purpose, fingerprint
from handler.codec import (
    certificate_from_stored,
    certificate_pem,
    private_key_from_stored,
    to_stored,
)
from handler.names import BundleNames, Item
from handler.store import ParameterStore
from tests.peers import (
    Daemon,
    docker_cli,
    docker_cli_available,
    dockerd_available,
    openssl_verify,
    python_mtls_handshake,
    running_dockerd,
)

ALGORITHMS = list(KeyAlgorithm)
ALGORITHM_IDS = [algorithm.value for algorithm in ALGORITHMS]

#: What the matrix racks' daemons are dialled by. "localhost" resolves to 127.0.0.1 but is
#: deliberately absent, so dialling it proves the client checks ServerSubjectAltNames.
SERVER_SANS = "127.0.0.1,dockerd.rack.internal"
NOT_IN_SANS = "localhost"

NEEDS_DOCKERD_REASON = "needs root, dockerd (apt docker.io) and /usr/local/bin/docker"
needs_dockerd = pytest.mark.skipif(
    not (dockerd_available() and docker_cli_available()), reason=NEEDS_DOCKERD_REASON
)

#: What the docker CLI prints when the daemon refuses its client certificate: the daemon's TLS
#: alert, or -- a TLS 1.3 race: the client may finish its handshake and write its request before
#: the daemon has judged the certificate -- a reset. The daemon log is where the reason is.
CLI_REJECTED = ("remote error: tls: bad certificate", "connection reset by peer")
#: What dockerd logs when a client certificate does not chain to its CA. Every rack's CA is
#: named "docker-tls CA", so Go's client *does* send a foreign rack's certificate (the issuer
#: name is in the daemon's acceptable-CA list) and the daemon's chain check refuses it.
DAEMON_FOREIGN_CLIENT = "tls: failed to verify client certificate: x509: certificate signed by"
DAEMON_NO_CLIENT = "tls: client didn't provide a certificate"
CLI_UNKNOWN_SERVER_CA = "x509: certificate signed by unknown authority"
CLI_NAME_NOT_IN_SANS = f"x509: certificate is valid for dockerd.rack.internal, not {NOT_IN_SANS}"


# ------------------------------------------------------------------------------------------
# A stack: lambda_handler + SSM over HTTP + CloudFormation responses over HTTPS
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """The six parameters of one rack as read back from SSM, base64-decoded to PEM."""

    rack: str
    ca_pem: bytes
    server_cert_pem: bytes
    client_cert_pem: bytes
    ca_key_pem: bytes = field(repr=False)
    server_key_pem: bytes = field(repr=False)
    client_key_pem: bytes = field(repr=False)

    @property
    def ca(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_pem)

    @property
    def server(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.server_cert_pem)

    @property
    def client(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.client_cert_pem)


def _public_der(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class Stack:
    """Sends CloudFormation events for generator resources and reads what they stored."""

    def __init__(self, receiver: Receiver, client: Any) -> None:
        self.receiver = receiver
        self.ssm = client

    def send(
        self,
        request_type: str,
        properties: dict[str, Any],
        *,
        physical_id: str | None = None,
        old_properties: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = event(
            request_type,
            app.GENERATOR,
            "DockerTLS",
            properties,
            response_url=self.receiver.url(),
            physical_id=physical_id,
            old_properties=old_properties,
        )
        app.lambda_handler(body, LambdaContext())
        responses = self.receiver.responses(body["ResponseURL"])
        assert len(responses) == 1, f"expected one response, got {len(responses)}"
        response = responses[0]
        assert response["Status"] == "SUCCESS", response.get("Reason")
        return response

    def create(self, properties: dict[str, Any]) -> dict[str, Any]:
        response = self.send("Create", properties)
        assert response["Data"]["Action"] == "created"
        return response

    def update(self, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        return self.send("Update", new, physical_id=old["Rack"].encode().hex(), old_properties=old)

    def values(self, rack: str) -> dict[str, str]:
        names = BundleNames.for_rack(rack)
        found = self.ssm.get_parameters(Names=list(names.material), WithDecryption=True)
        return {p["Name"]: p["Value"] for p in found["Parameters"]}

    def versions(self, rack: str) -> dict[str, int]:
        names = BundleNames.for_rack(rack)
        found = self.ssm.get_parameters(Names=list(names.material))["Parameters"]
        return {p["Name"]: p["Version"] for p in found}

    def read_bundle(self, rack: str) -> Bundle:
        """All six parameters, fresh from SSM, as an instance's user data decodes them."""
        names = BundleNames.for_rack(rack)
        values = self.values(rack)
        assert set(values) == set(names.material)

        def pem(name: str) -> bytes:
            return base64.b64decode(values[name], validate=True)

        return Bundle(
            rack=rack,
            ca_pem=pem(names.cert(Item.CA)),
            server_cert_pem=pem(names.cert(Item.SERVER)),
            client_cert_pem=pem(names.cert(Item.CLIENT)),
            ca_key_pem=pem(names.key(Item.CA)),
            server_key_pem=pem(names.key(Item.SERVER)),
            client_key_pem=pem(names.key(Item.CLIENT)),
        )

    def overwrite(self, name: str, pem: bytes, *, secure: bool) -> None:
        """The test's own write over HTTP (a fault or an older bundle), not the handler's."""
        with ssm_rules.seeding():
            self.ssm.put_parameter(
                Name=name,
                Value=to_stored(pem),
                Type="SecureString" if secure else "String",
                Overwrite=True,
            )

    def stored_authority(self, rack: str) -> CertificateAuthority:
        names = BundleNames.for_rack(rack)
        values = self.values(rack)
        return CertificateAuthority(
            certificate_from_stored(values[names.cert(Item.CA)]),
            private_key_from_stored(values[names.key(Item.CA)]),
        )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with (
        local_ssm() as endpoint,
        response_receiver() as receiver,
        pytest.MonkeyPatch.context() as patch,
    ):
        # An explicit endpoint: the autouse _aws_env fixture unsets AWS_ENDPOINT_URL_SSM per test.
        client = boto3.client("ssm", endpoint_url=endpoint.endpoint, region_name="us-east-1")
        patch.setattr(app, "store", ParameterStore(client))
        yield Stack(receiver, client)


def _matrix_properties(rack: str, algorithm: KeyAlgorithm) -> dict[str, Any]:
    return {
        "Rack": rack,
        "Version": "1",
        "KeyAlgorithm": algorithm.value,
        "ServerSubjectAltNames": SERVER_SANS,
    }


@pytest.fixture(scope="module")
def material(stack: Stack) -> Callable[[KeyAlgorithm, str], Bundle]:
    """``material(algorithm, role)``: a rack's bundle created through the handler, cached.

    ``role`` "rack" is the fleet under test; "other" is a second rack (its own CA) whose client
    certificate must be refused by the first rack's daemons.
    """
    cache: dict[tuple[KeyAlgorithm, str], Bundle] = {}

    def get(algorithm: KeyAlgorithm, role: str = "rack") -> Bundle:
        if (algorithm, role) not in cache:
            rack = f"{role}-{algorithm.value.lower()}"
            response = stack.create(_matrix_properties(rack, algorithm))
            bundle = stack.read_bundle(rack)
            # The response's public CA facts describe what is stored.
            assert base64.b64decode(response["Data"]["CACertificate"]) == bundle.ca_pem
            assert response["Data"]["CAFingerprint"] == fingerprint(bundle.ca)
            cache[(algorithm, role)] = bundle
        return cache[(algorithm, role)]

    return get


# ------------------------------------------------------------------------------------------
# Quick checks: openssl verify and a Python ssl mutual-TLS handshake (no daemon)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_stored_keys_are_the_asked_algorithm(
    material: Callable[[KeyAlgorithm, str], Bundle], algorithm: KeyAlgorithm
) -> None:
    bundle = material(algorithm, "rack")
    for cert, key_pem in (
        (bundle.ca, bundle.ca_key_pem),
        (bundle.server, bundle.server_key_pem),
        (bundle.client, bundle.client_key_pem),
    ):
        key = private_key_from_stored(to_stored(key_pem))
        assert KeyAlgorithm.of(key) is algorithm
        assert _public_der(cert) == key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_openssl_verifies_server_for_sslserver(
    material: Callable[[KeyAlgorithm, str], Bundle], algorithm: KeyAlgorithm
) -> None:
    bundle = material(algorithm, "rack")
    by_ip = openssl_verify(bundle.ca_pem, bundle.server_cert_pem, "sslserver", ip="127.0.0.1")
    by_name = openssl_verify(
        bundle.ca_pem, bundle.server_cert_pem, "sslserver", host="dockerd.rack.internal"
    )
    for res in (by_ip, by_name):
        assert res.returncode == 0, res.stdout + res.stderr
        assert ": OK" in res.stdout


def test_default_properties_serve_localhost_and_loopback(stack: Stack) -> None:
    """A generator with only ``Rack`` (RSA-2048, SANs localhost and 127.0.0.1) as stacks use it."""
    stack.create({"Rack": "defaults-rack"})
    bundle = stack.read_bundle("defaults-rack")
    assert KeyAlgorithm.of(private_key_from_stored(to_stored(bundle.server_key_pem))) is (
        KeyAlgorithm.RSA_2048
    )
    res = openssl_verify(
        bundle.ca_pem, bundle.server_cert_pem, "sslserver", host="localhost", ip="127.0.0.1"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for hostname in ("localhost", "127.0.0.1"):
        result = python_mtls_handshake(
            bundle.ca_pem,
            bundle.server_cert_pem,
            bundle.server_key_pem,
            bundle.client_cert_pem,
            bundle.client_key_pem,
            server_hostname=hostname,
        )
        assert result.ok, (hostname, result)


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_openssl_verifies_client_for_sslclient(
    material: Callable[[KeyAlgorithm, str], Bundle], algorithm: KeyAlgorithm
) -> None:
    bundle = material(algorithm, "rack")
    res = openssl_verify(bundle.ca_pem, bundle.client_cert_pem, "sslclient")
    assert res.returncode == 0, res.stdout + res.stderr
    assert ": OK" in res.stdout


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_openssl_refuses_wrong_purpose_name_and_ca(
    material: Callable[[KeyAlgorithm, str], Bundle], algorithm: KeyAlgorithm
) -> None:
    bundle, other = material(algorithm, "rack"), material(algorithm, "other")
    server_as_client = openssl_verify(bundle.ca_pem, bundle.server_cert_pem, "sslclient")
    assert server_as_client.returncode != 0
    assert "unsuitable certificate purpose" in server_as_client.stderr
    client_as_server = openssl_verify(bundle.ca_pem, bundle.client_cert_pem, "sslserver")
    assert client_as_server.returncode != 0
    assert "unsuitable certificate purpose" in client_as_server.stderr
    wrong_name = openssl_verify(
        bundle.ca_pem, bundle.server_cert_pem, "sslserver", host=NOT_IN_SANS
    )
    assert wrong_name.returncode != 0
    assert "hostname mismatch" in wrong_name.stderr
    foreign = openssl_verify(bundle.ca_pem, other.client_cert_pem, "sslclient")
    assert foreign.returncode != 0
    # Same issuer name ("docker-tls CA"), other key: OpenSSL's AKI match finds no issuer.
    assert "unable to get local issuer certificate" in foreign.stdout + foreign.stderr


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_python_mtls_handshake(
    material: Callable[[KeyAlgorithm, str], Bundle], algorithm: KeyAlgorithm
) -> None:
    bundle = material(algorithm, "rack")
    for hostname in ("127.0.0.1", "dockerd.rack.internal"):
        result = python_mtls_handshake(
            bundle.ca_pem,
            bundle.server_cert_pem,
            bundle.server_key_pem,
            bundle.client_cert_pem,
            bundle.client_key_pem,
            server_hostname=hostname,
        )
        assert result.ok, (hostname, result)
        assert result.tls_version == "TLSv1.3"


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_python_mtls_handshake_rejections(
    material: Callable[[KeyAlgorithm, str], Bundle], algorithm: KeyAlgorithm
) -> None:
    bundle, other = material(algorithm, "rack"), material(algorithm, "other")
    server = (bundle.ca_pem, bundle.server_cert_pem, bundle.server_key_pem)

    foreign = python_mtls_handshake(
        *server, other.client_cert_pem, other.client_key_pem, server_hostname="127.0.0.1"
    )
    assert not foreign.server_ok and not foreign.client_ok
    assert "unable to get local issuer certificate" in (foreign.server_error or "")
    assert "alert unknown ca" in (foreign.client_error or "")

    anonymous = python_mtls_handshake(*server, None, None, server_hostname="127.0.0.1")
    assert not anonymous.server_ok and not anonymous.client_ok
    assert "peer did not return a certificate" in (anonymous.server_error or "")
    assert "alert certificate required" in (anonymous.client_error or "")

    wrong_name = python_mtls_handshake(
        *server, bundle.client_cert_pem, bundle.client_key_pem, server_hostname=NOT_IN_SANS
    )
    assert not wrong_name.client_ok
    assert "Hostname mismatch" in (wrong_name.client_error or "")


# ------------------------------------------------------------------------------------------
# A real dockerd per KeyAlgorithm: the matrix
# ------------------------------------------------------------------------------------------


@dataclass
class Fleet:
    """One rack's daemon, started with the rack's CA and server certificate from SSM."""

    bundle: Bundle
    other: Bundle
    daemon: Daemon


@pytest.fixture(scope="module", params=ALGORITHMS, ids=ALGORITHM_IDS)
def fleet(
    request: pytest.FixtureRequest, material: Callable[[KeyAlgorithm, str], Bundle]
) -> Iterator[Fleet]:
    if not (dockerd_available() and docker_cli_available()):
        pytest.skip(NEEDS_DOCKERD_REASON)
    bundle = material(request.param, "rack")
    other = material(request.param, "other")
    with running_dockerd(bundle.ca_pem, bundle.server_cert_pem, bundle.server_key_pem) as daemon:
        yield Fleet(bundle, other, daemon)


def _version(
    daemon: Daemon, ca_pem: bytes, cert_pem: bytes | None, key_pem: bytes | None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """``docker version`` against ``daemon`` with ``--tlsverify`` (unless told otherwise)."""
    return docker_cli(
        daemon.port, "version", ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem, **kw
    )


def _assert_works(daemon: Daemon, bundle: Bundle) -> None:
    mark = len(daemon.log_text())
    res = _version(daemon, bundle.ca_pem, bundle.client_cert_pem, bundle.client_key_pem)
    assert res.returncode == 0, res.stderr
    assert "Server:" in res.stdout and "API version:" in res.stdout
    assert "TLS handshake error" not in daemon.log_text(mark)


@pytest.mark.dockerd
@needs_dockerd
def test_dockerd_accepts_the_racks_client(fleet: Fleet) -> None:
    _assert_works(fleet.daemon, fleet.bundle)


@pytest.mark.dockerd
@needs_dockerd
def test_dockerd_rejects_another_racks_client(fleet: Fleet) -> None:
    daemon, other = fleet.daemon, fleet.other
    mark = len(daemon.log_text())
    res = _version(daemon, fleet.bundle.ca_pem, other.client_cert_pem, other.client_key_pem)
    assert res.returncode != 0
    assert any(text in res.stderr for text in CLI_REJECTED), res.stderr
    assert DAEMON_FOREIGN_CLIENT in daemon.log_text(mark)


@pytest.mark.dockerd
@needs_dockerd
def test_dockerd_rejects_no_client_cert(fleet: Fleet) -> None:
    daemon = fleet.daemon
    mark = len(daemon.log_text())
    res = _version(daemon, fleet.bundle.ca_pem, None, None)
    assert res.returncode != 0
    assert any(text in res.stderr for text in CLI_REJECTED), res.stderr
    assert DAEMON_NO_CLIENT in daemon.log_text(mark)


@pytest.mark.dockerd
@needs_dockerd
def test_cli_refuses_a_name_not_in_server_sans(fleet: Fleet) -> None:
    bundle = fleet.bundle
    res = _version(
        fleet.daemon,
        bundle.ca_pem,
        bundle.client_cert_pem,
        bundle.client_key_pem,
        host=NOT_IN_SANS,
    )
    assert res.returncode != 0
    assert CLI_NAME_NOT_IN_SANS in res.stderr, res.stderr
    # The same daemon, the same client material, by a name that is in the SANs: accepted.
    by_ip = _version(fleet.daemon, bundle.ca_pem, bundle.client_cert_pem, bundle.client_key_pem)
    assert by_ip.returncode == 0, by_ip.stderr


# ------------------------------------------------------------------------------------------
# The seed scenario: the daemon keeps the CA it booted with while the stack is updated
# ------------------------------------------------------------------------------------------


def _plant_near_expiry_client(
    stack: Stack, rack: str, algorithm: KeyAlgorithm, days_left: int = 30
) -> x509.Certificate:
    """Overwrite the client pair with one signed by the stored CA that is healthy in every
    respect (the rack's KeyAlgorithm, clientAuth, matching key) except that it expires soon."""
    names = BundleNames.for_rack(rack)
    authority = stack.stored_authority(rack)
    leaf = authority.issue(
        Purpose.CLIENT,
        algorithm,
        validity_days=days_left,
        now=dt.datetime.now(dt.UTC),
    )
    stack.overwrite(names.key(Item.CLIENT), leaf.key_pem(), secure=True)
    stack.overwrite(names.cert(Item.CLIENT), leaf.cert_pem(), secure=False)
    return leaf.cert


def _plant_near_expiry_ca(stack: Stack, rack: str, days_left: int = 30) -> x509.Certificate:
    """Overwrite the CA certificate with one for the same key and subject that expires soon."""
    names = BundleNames.for_rack(rack)
    authority = stack.stored_authority(rack)
    short = CertificateAuthority.from_key(
        authority.key,
        subject=authority.cert.subject,
        validity_days=days_left,
        now=dt.datetime.now(dt.UTC),
    )
    stack.overwrite(names.cert(Item.CA), certificate_pem(short.cert), secure=False)
    return short.cert


def _days_left(cert: x509.Certificate) -> int:
    return (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).days


@pytest.mark.dockerd
@needs_dockerd
def test_seed_scenario_instance_keeps_its_boot_ca(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="handler")
    rack = "seed-rack"
    algorithm = KeyAlgorithm.RSA_2048  # the default, as the convox rack used
    names = BundleNames.for_rack(rack)
    props: dict[str, Any] = {"Rack": rack, "Version": "1"}  # defaults: RSA-2048, localhost+IP
    created = stack.create(props)
    boot = stack.read_bundle(rack)  # what the instance wrote to /etc/*.pem at boot
    assert created["Data"]["CAFingerprint"] == fingerprint(boot.ca)

    def update(**changes: str) -> dict[str, Any]:
        nonlocal props
        new = {**props, **changes}
        caplog.clear()
        response = stack.update(props, new)
        props = new
        return response

    def decisions() -> dict[str, str]:
        """Why the handler wrote what it wrote in the last Update, per item (from its log)."""
        found = [r.decisions for r in caplog.records if hasattr(r, "decisions")]
        assert len(found) == 1, found
        return dict(found[0])

    with running_dockerd(boot.ca_pem, boot.server_cert_pem, boot.server_key_pem) as daemon:
        _assert_works(daemon, stack.read_bundle(rack))

        # 1. A stack Update with a new Version: nothing is written, the CA is the boot CA.
        before = stack.versions(rack)
        response = update(Version="2")
        assert response["Data"]["Action"] == "reused"
        assert response["Data"]["CAFingerprint"] == fingerprint(boot.ca)
        assert stack.versions(rack) == before
        assert not [r for r in caplog.records if hasattr(r, "decisions")]
        _assert_works(daemon, stack.read_bundle(rack))

        # 2. The client certificate nears expiry; the next Update reissues it from the kept CA.
        planted = _plant_near_expiry_client(stack, rack, algorithm)
        assert _days_left(planted) < 60  # inside the default RenewBeforeDays
        before = stack.versions(rack)
        response = update(Version="3")
        assert response["Data"]["Action"] == "renewed"
        why = decisions()
        assert why["ca"] == "reuse: healthy" and why["server"] == "reuse: healthy"
        assert why["client"].startswith("reissue: expires") and "RenewBeforeDays" in why["client"]
        after = stack.versions(rack)
        assert after[names.cert(Item.CA)] == before[names.cert(Item.CA)]
        assert after[names.cert(Item.SERVER)] == before[names.cert(Item.SERVER)]
        fresh = stack.read_bundle(rack)
        assert fresh.client.serial_number not in {planted.serial_number, boot.client.serial_number}
        assert _days_left(fresh.client) > 365
        assert fresh.ca_pem == boot.ca_pem
        _assert_works(daemon, fresh)

        # 3. The CA certificate nears expiry; the Update renews it with the same key and name.
        short_ca = _plant_near_expiry_ca(stack, rack)
        before = stack.versions(rack)
        response = update(Version="4")
        assert response["Data"]["Action"] == "renewed"
        why = decisions()
        assert why["ca"].startswith("renew: CA expires") and "RenewBeforeDays" in why["ca"]
        assert why["server"] == "reuse: healthy" and why["client"] == "reuse: healthy"
        fresh = stack.read_bundle(rack)
        renewed_ca = fresh.ca
        assert fingerprint(renewed_ca) not in {fingerprint(boot.ca), fingerprint(short_ca)}
        assert response["Data"]["CAFingerprint"] == fingerprint(renewed_ca)
        assert _public_der(renewed_ca) == _public_der(boot.ca)
        assert renewed_ca.subject == boot.ca.subject
        assert _days_left(renewed_ca) > 365
        after = stack.versions(rack)
        for item in (Item.SERVER, Item.CLIENT):  # the leaves still chain: kept as they were
            assert after[names.cert(item)] == before[names.cert(item)]
        # The CLI checks the daemon's boot-time server certificate against the renewed CA.
        _assert_works(daemon, fresh)

        # 3b. A leaf issued under the renewed CA certificate is trusted by the boot CA.
        previous_client = fresh.client
        _plant_near_expiry_client(stack, rack, algorithm)
        response = update(Version="5")
        assert response["Data"]["Action"] == "renewed"
        assert decisions()["client"].startswith("reissue: expires")
        fresh = stack.read_bundle(rack)
        assert fresh.ca_pem == certificate_pem(renewed_ca)
        assert fresh.client.serial_number != previous_client.serial_number
        _assert_works(daemon, fresh)

        # 4. An explicit RotationToken rotation: a new CA key the instance never saw.
        response = update(Version="6", RotationToken="rotate-2026")
        assert response["Data"]["Action"] == "rotated"
        assert decisions()["ca"] == "rotate: RotationToken changed"
        assert any("must be replaced" in r.getMessage() for r in caplog.records)
        fresh = stack.read_bundle(rack)
        assert _public_der(fresh.ca) != _public_der(boot.ca)

        # With the new CA the CLI cannot verify the instance's server certificate ...
        res = _version(daemon, fresh.ca_pem, fresh.client_cert_pem, fresh.client_key_pem)
        assert res.returncode != 0
        assert CLI_UNKNOWN_SERVER_CA in res.stderr, res.stderr

        # ... and with the CA the instance holds, the daemon refuses the new client certificate.
        mark = len(daemon.log_text())
        res = _version(daemon, boot.ca_pem, fresh.client_cert_pem, fresh.client_key_pem)
        assert res.returncode != 0
        assert any(text in res.stderr for text in CLI_REJECTED), res.stderr
        assert DAEMON_FOREIGN_CLIENT in daemon.log_text(mark)

        # The instance itself is fine: its boot-time client material still works.
        _assert_works(daemon, boot)
