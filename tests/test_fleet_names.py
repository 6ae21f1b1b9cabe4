"""Every client verifies the daemon it dials: one server certificate, every instance's name.

The bundle is made by the handler with the example template's names for us-east-1
(``localhost``, ``127.0.0.1``, ``*.ec2.internal``, ``*.us-east-1.compute.internal``). A real
``dockerd --tlsverify`` serves it on 127.0.0.1; the docker CLI dials it by instance-style
private DNS names that resolve to 127.0.0.1 only inside its own mount namespace (a hosts file
bound over /etc/hosts; the machine's is never edited), with full verification. Names under the
wildcards are accepted; others are refused with Go's hostname error. OpenSSL and Python's
``ssl`` are asked the same questions and must give the same answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from handler.ensure import ensure
from handler.names import BundleNames
from handler.properties import parse_generator
from handler.store import ParameterStore
from tests.material import Material, read_material
from tests.peers import (
    Daemon,
    docker_cli_available,
    docker_version,
    dockerd_available,
    openssl_verify,
    python_mtls_handshake,
    running_dockerd,
)

RACK = "fleet-names"
NAMES = BundleNames.for_rack(RACK)
US_EAST_1 = "localhost,127.0.0.1,*.ec2.internal,*.us-east-1.compute.internal"

#: Instance names as EC2 gives them in us-east-1 (IP-based and resource-based hostnames).
UNDER_THE_WILDCARDS = [
    "ip-10-0-1-23.ec2.internal",
    "i-0123456789abcdef0.ec2.internal",
    "ip-10-0-1-23.us-east-1.compute.internal",
]
#: Names the certificate must not cover: another region's, two labels deep, a bare suffix.
OUTSIDE = [
    "ip-10-0-1-23.eu-west-1.compute.internal",
    "a.ip-10-0-1-23.ec2.internal",
    "ec2.internal",
]


@pytest.fixture(scope="module")
def pems() -> Material:
    """The bundle the handler stores for the example template's us-east-1 names."""
    from moto import mock_aws

    with mock_aws():
        import boto3

        client = boto3.client("ssm", region_name="us-east-1")
        now = dt.datetime.now(dt.UTC)
        properties = {"Rack": RACK, "KeyAlgorithm": "ECDSA-P256"}
        properties["ServerSubjectAltNames"] = US_EAST_1
        ensure(ParameterStore(client), parse_generator(properties, now), rotate=False, now=now)
        return read_material(client, NAMES, "us-east-1")


@pytest.fixture(scope="module")
def daemon(pems: Material) -> Iterator[Daemon]:
    if not (dockerd_available() and docker_cli_available()):
        pytest.skip("needs root, dockerd (apt docker.io) and the docker CLI")  # fails in CI
    with running_dockerd(pems.ca, pems.server_cert, pems.server_key) as running:
        yield running


def _dial(daemon: Daemon, pems: Material, name: str) -> Any:
    return docker_version(
        daemon.port,
        ca_pem=pems.ca,
        cert_pem=pems.client_cert,
        key_pem=pems.client_key,
        host=name,
        resolve={name: "127.0.0.1"},
    )


@pytest.mark.dockerd
@pytest.mark.parametrize("name", UNDER_THE_WILDCARDS)
def test_the_docker_cli_verifies_the_daemon_by_its_private_dns_name(
    daemon: Daemon, pems: Material, name: str
) -> None:
    result = _dial(daemon, pems, name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


@pytest.mark.dockerd
@pytest.mark.parametrize("name", OUTSIDE)
def test_a_name_outside_the_wildcards_is_refused_by_go(
    daemon: Daemon, pems: Material, name: str
) -> None:
    result = _dial(daemon, pems, name)
    assert result.returncode != 0
    assert "x509: certificate is valid for localhost, *.ec2.internal, " in result.stderr
    assert f"not {name}" in result.stderr, result.stderr


@pytest.mark.parametrize("name", UNDER_THE_WILDCARDS + OUTSIDE)
def test_openssl_and_python_agree_with_go(pems: Material, name: str) -> None:
    covered = name in UNDER_THE_WILDCARDS
    verified = openssl_verify(pems.ca, pems.server_cert, "sslserver", host=name)
    assert (verified.returncode == 0) is covered, verified.stdout + verified.stderr
    if not covered:
        assert "hostname mismatch" in verified.stderr
    handshake = python_mtls_handshake(
        pems.ca,
        pems.server_cert,
        pems.server_key,
        pems.client_cert,
        pems.client_key,
        server_hostname=name,
    )
    assert handshake.ok is covered, handshake
