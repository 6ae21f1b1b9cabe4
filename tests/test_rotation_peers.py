"""A staged CA replacement, proven with real peers: nobody that can coexist is locked out.

For every transition (steady → introduce → switch → retire, a cancel, and CloudFormation's
rollback of each), the handler makes the material before and after; a real ``dockerd
--tlsverify`` runs with each, and clients set up from either side talk to both daemons: the
docker CLI (Go) and an OpenSSL-based client (Python's ``ssl``). Every pairing must complete
mutual TLS. Algorithms: an RSA-2048 and an ECDSA-P256 CA, and a rack adopted from the convox
handler (RSA-2048, CN=Convox, leaves without SANs or authority key identifiers) moved to an
ECDSA-P256 CA under a KMS key. A control transition (RotationToken, the immediate rotation)
shows that the check does fail where parties lock each other out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from handler.certificates import KeyAlgorithm
from handler.ensure import ensure
from handler.model import GeneratorProperties, RotationStage
from handler.names import BundleNames, Item
from handler.properties import parse_generator
from handler.store import ParameterStore
from tests.legacy import store_convox_rack
from tests.material import Material, read_material
from tests.peers import (
    Daemon,
    docker_cli_available,
    docker_version,
    dockerd_available,
    openssl_client_ping,
    running_dockerd,
)

pytestmark = pytest.mark.dockerd

INTRODUCE, SWITCH = RotationStage.INTRODUCE, RotationStage.SWITCH
RACK = "staged-peers"
NAMES = BundleNames.for_rack(RACK)
NOW = dt.datetime.now(dt.UTC)

#: Each path: (label, requested stage, the stage the stack sent before), from a steady rack.
PATHS = {
    "forward": [
        ("introduce", INTRODUCE, None),
        ("switch", SWITCH, INTRODUCE),
        ("retire", None, SWITCH),
        ("rollback of retire", SWITCH, None),
    ],
    "switch rolled back, then cancelled": [
        ("introduce", INTRODUCE, None),
        ("switch", SWITCH, INTRODUCE),
        ("rollback of switch", INTRODUCE, SWITCH),
        ("cancel", None, INTRODUCE),
    ],
    "cancelled, then rolled back": [
        ("introduce", INTRODUCE, None),
        ("cancel", None, INTRODUCE),
        ("rollback of cancel", INTRODUCE, None),
    ],
}
#: Transitions whose earlier parties the runbook assumes gone: a cancel after a rolled-back
#: switch strands the switch's parties (their leaves are from the dropped CA). The pairs that
#: must hold are those of the two adjacent states; the switch's own parties are not among them.


class Rack:
    """A rack in SSM (in-process moto), driven through the handler's ensure."""

    def __init__(self, client: Any, base: GeneratorProperties) -> None:
        self.client = client
        self.store = ParameterStore(client, sleep=lambda _: None)
        self.base = base

    def step(
        self,
        label: str,
        stage: RotationStage | None,
        previous: RotationStage | None,
        **changes: Any,
    ) -> tuple[Material, str]:
        props = dataclasses.replace(self.base, rotation_stage=stage, **changes)
        rotate = bool(changes.get("rotation_token"))
        outcome = ensure(self.store, props, rotate=rotate, now=NOW, previous_stage=previous)
        return read_material(self.client, NAMES, label), outcome.action.value


@pytest.fixture
def ssm_client() -> Iterator[Any]:
    if not (dockerd_available() and docker_cli_available()):
        pytest.skip("needs root, dockerd (apt docker.io) and the docker CLI")  # fails in CI
    from moto import mock_aws

    with mock_aws():
        import boto3

        yield boto3.client("ssm", region_name="us-east-1")


def _failures(daemons: dict[str, Daemon], before: Material, after: Material) -> list[str]:
    """Every pairing of {daemon, client} x {before, after} that does not complete mutual TLS."""
    failed = []
    for server in (before, after):
        daemon = daemons[server.label]
        for client in (before, after):
            pair = f"{client.label} client -> {server.label} daemon"
            go = docker_version(
                daemon.port,
                ca_pem=client.ca,
                cert_pem=client.client_cert,
                key_pem=client.client_key,
            )
            if go.returncode != 0:
                failed.append(f"{pair} (docker CLI): {go.stderr.strip()[-200:]}")
            problem = openssl_client_ping(
                daemon.port,
                ca_pem=client.ca,
                cert_pem=client.client_cert,
                key_pem=client.client_key,
            )
            if problem:
                failed.append(f"{pair} (OpenSSL): {problem[-200:]}")
    return failed


def _walk(rack: Rack, path: list[tuple[str, RotationStage | None, RotationStage | None]],
          start: Material, record: Any) -> None:  # fmt: skip
    """Step through ``path``; each adjacent pair of states must accept each other."""
    with ExitStack() as stack:
        daemons: dict[str, Daemon] = {}

        def serve(material: Material) -> None:
            if material.label not in daemons:
                daemons[material.label] = stack.enter_context(
                    running_dockerd(material.ca, material.server_cert, material.server_key)
                )

        before = start
        serve(before)
        for label, stage, previous in path:
            after, action = rack.step(label, stage, previous)
            serve(after)
            started = time.monotonic()
            failed = _failures(daemons, before, after)
            assert not failed, f"{before.label} -> {label} ({action}):\n" + "\n".join(failed)
            record(f"{before.label} -> {label}", action, time.monotonic() - started)
            before = after


def _base(algorithm: KeyAlgorithm) -> GeneratorProperties:
    return dataclasses.replace(parse_generator({"Rack": RACK}, NOW), key_algorithm=algorithm)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("algorithm", [KeyAlgorithm.RSA_2048, KeyAlgorithm.ECDSA_P256], ids=str)
def test_every_party_that_can_coexist_keeps_talking(
    ssm_client: Any, algorithm: KeyAlgorithm, path: str, record_property: Any
) -> None:
    rack = Rack(ssm_client, _base(algorithm))
    start, action = rack.step("steady", None, None)
    assert action == "created"

    def record(transition: str, action: str, seconds: float) -> None:
        record_property(f"{algorithm.value} {transition}", f"{action}, 8 pairings, {seconds:.1f} s")

    _walk(rack, PATHS[path], start, record)


def test_a_convox_rack_moves_to_an_ecdsa_ca_under_kms_without_an_outage(
    ssm_client: Any, record_property: Any
) -> None:
    """The old handler's rack: adopted as is, then moved to an ECDSA-P256 CA whose key is a
    SecureString under a customer KMS key, with the leaves reissued as ECDSA-P256 too."""
    store_convox_rack(ssm_client, RACK, NOW)
    rack = Rack(ssm_client, _base(KeyAlgorithm.RSA_2048))
    adopted, action = rack.step("adopted", None, None)
    assert action == "renewed"  # only the missing server certificate was issued
    rack.base = dataclasses.replace(
        rack.base, key_algorithm=KeyAlgorithm.ECDSA_P256, kms_key_id="alias/docker-tls-rack"
    )

    def record(transition: str, action: str, seconds: float) -> None:
        record_property(f"convox {transition}", f"{action}, 8 pairings, {seconds:.1f} s")

    _walk(rack, PATHS["forward"][:3], adopted, record)
    described = ssm_client.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Values": [NAMES.key(Item.CA)]}]
    )["Parameters"][0]
    assert described["Type"] == "SecureString"
    assert described["KeyId"] == "alias/docker-tls-rack"


def test_the_check_fails_where_an_immediate_rotation_locks_parties_out(ssm_client: Any) -> None:
    """A control: RotationToken replaces the CA at once; the parties before and after refuse
    each other, and the pairing check says so."""
    rack = Rack(ssm_client, _base(KeyAlgorithm.ECDSA_P256))
    before, _ = rack.step("steady", None, None)
    after, action = rack.step("rotated", None, None, rotation_token="leaked")
    assert action == "rotated"
    with (
        running_dockerd(before.ca, before.server_cert, before.server_key) as old,
        running_dockerd(after.ca, after.server_cert, after.server_key) as new,
    ):
        failed = _failures({"steady": old, "rotated": new}, before, after)
    # Each side's own pairs work; the four cross pairs (two clients, two checkers) do not.
    assert len(failed) == 4, failed
    assert all("steady client -> rotated" in f or "rotated client -> steady" in f for f in failed)
