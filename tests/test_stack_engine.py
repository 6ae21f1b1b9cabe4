"""The stack as CloudFormation runs it: template.yaml and the built artifact under a CloudFormation
engine someone else wrote (MiniStack on 127.0.0.1, :mod:`devkit.stack_engine`).

Only real stack operations: CreateStack, UpdateStack and DeleteStack through boto3, and readings
through the engine's CloudFormation, SSM and EC2 APIs. The engine decides what the function is
sent (Create, Update with ``OldResourceProperties``, the rollback's Update, the Delete of a
replaced resource in the cleanup phase); the function's code is never called from here. The
substitutions the engine needs are in :func:`devkit.stack_deploy.for_engine`.

One engine and one artifact serve the module; every test has stacks and racks of its own. Each
step's time is printed (``pytest -s`` shows it). Needs ``make engine``; skips without it on a
laptop and fails under ``CI=true``.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from devkit.stack_deploy import prepare, with_failing_resource
from devkit.stack_engine import missing, stack_engine
from devkit.stack_lifecycle import (
    NO_UPDATES,
    Stacks,
    Step,
    stored_fingerprints,
    user_data_digest,
)
from handler.names import BundleNames, Item

pytestmark = [pytest.mark.engine, pytest.mark.slow]

CA_NAMES = ("-docker-tls-ca-cert", "-docker-tls-ca-key")


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stacks]:
    reason = missing()
    if reason:
        pytest.skip(reason)  # a failure under CI=true (tests/conftest.py)
    state: Path = tmp_path_factory.mktemp("engine")
    with stack_engine(state / "engine") as engine:
        yield Stacks(engine, prepare(engine, state / "build"))


def _unique(what: str) -> str:
    return f"engine-{what}-{uuid.uuid4().hex[:8]}"


def _shown(step: Step) -> Step:
    print(step.line() + (f"\n    reason: {step.reason[:200]}" if step.reason else ""))
    return step


def _trusted_as_installed(stacks: Stacks, stack: str) -> tuple[str, ...]:
    """Fingerprints of the CAs the launch template's UserData writes to /etc/ca.pem."""
    return stored_fingerprints(stacks.user_data_ca(stack))


def _requests_during(stacks: Stacks, stack: str, seen: int) -> list[tuple[str, str, str]]:
    """(RequestType, LogicalResourceId, Action) of each request after the first ``seen``."""
    return [
        (r.request_type, r.logical_id, r.action) for r in stacks.function_requests(stack)[seen:]
    ]


def _certificate(value: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(value))


def test_create_puts_the_getters_ca_into_the_launch_template(stacks: Stacks) -> None:
    stack, rack = _unique("create"), _unique("rack")
    names = BundleNames.for_rack(rack)

    step = _shown(stacks.create("create", stack, Rack=rack))

    assert step.status == "CREATE_COMPLETE", step.reason
    assert step.action == "created"
    assert set(names.material) <= set(step.written)
    stored = stacks.bundle(names.prefix)
    ca = stored[names.cert(Item.CA)]
    # The CA getter's value, through Fn::GetAtt and Fn::Sub, is what UserData installs.
    assert stacks.user_data_ca(stack) == ca
    carries_server_cert = f"'{stored[names.cert(Item.SERVER)]}'" in stacks.user_data(stack)
    assert carries_server_cert  # (never compared in the open: UserData holds the server key)
    outputs = stacks.outputs(stack)
    (fingerprint,) = stored_fingerprints(ca)
    assert outputs["CAFingerprint"] == fingerprint == step.fingerprint
    assert outputs["TrustedCAFingerprints"] == fingerprint
    assert outputs["CACertSSMKey"] == names.cert(Item.CA)
    assert not any("PRIVATE KEY" in value for value in outputs.values())


def test_a_no_op_update_is_refused_and_a_version_bump_writes_nothing(stacks: Stacks) -> None:
    stack, rack = _unique("version"), _unique("rack")
    names = BundleNames.for_rack(rack)
    created = _shown(stacks.create("create", stack, Rack=rack))
    assert created.status == "CREATE_COMPLETE", created.reason
    versions = stacks.parameter_versions()

    refused = _shown(stacks.update("update, nothing changed", stack))
    assert NO_UPDATES in refused.reason
    assert refused.status == "CREATE_COMPLETE"

    bumped = _shown(stacks.update("update Version", stack, Version="2"))
    assert bumped.status == "UPDATE_COMPLETE", bumped.reason
    assert bumped.action == "reused"
    assert bumped.written == ()
    assert stacks.parameter_versions() == versions
    assert bumped.fingerprint == created.fingerprint
    assert stacks.user_data_ca(stack) == stacks.bundle(names.prefix)[names.cert(Item.CA)]


def test_a_failing_update_rolls_back_to_the_ca_it_had(stacks: Stacks) -> None:
    stack, rack = _unique("rollback"), _unique("rack")
    names = BundleNames.for_rack(rack)
    created = _shown(stacks.create("create", stack, Rack=rack))
    assert created.status == "CREATE_COMPLETE", created.reason
    before = stacks.bundle_digests(names.prefix)
    user_data = user_data_digest(stacks.user_data(stack))
    outputs = stacks.outputs(stack)
    seen = len(stacks.function_requests(stack))

    failed = _shown(stacks.update("KeyAlgorithm=RSA-4096", stack, KeyAlgorithm="RSA-4096"))

    assert failed.status == "UPDATE_ROLLBACK_COMPLETE"
    # The server key getter refuses an RSA-4096 key: too large for the 4096-byte response.
    assert failed.reason.startswith("DockerTLSServerKey:")
    assert "4096" in failed.reason
    after = stacks.bundle_digests(names.prefix)
    assert set(after) == set(before)
    # The CA, certificate and key, byte for byte. The leaves cannot be: the RSA-4096 update
    # reissued them and the rollback's Update (RSA-2048 again) reissued them once more, under
    # the same CA (docs/ENGINE.md).
    for name in (names.cert(Item.CA), names.key(Item.CA)):
        assert after[name] == before[name]
    stored = stacks.bundle(names.prefix)
    ca = _certificate(stored[names.cert(Item.CA)])
    for item in (Item.SERVER, Item.CLIENT):
        leaf = _certificate(stored[names.cert(item)])
        leaf.verify_directly_issued_by(ca)
        key = leaf.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        assert key.key_size == 2048
    # The launch template was never updated (the failure came first): what instances get is
    # what they got before, and it still verifies under the kept CA.
    assert user_data_digest(stacks.user_data(stack)) == user_data
    rolled_back = stacks.outputs(stack)
    for output in ("CAFingerprint", "TrustedCAFingerprints", "CACertSSMKey"):
        assert rolled_back[output] == outputs[output]
    # What the function was sent: the update (RSA-4096 leaves issued), the getters up to the
    # failing one, then the rollback's Update with the old properties (RSA-2048 issued again).
    requests = _requests_during(stacks, stack, seen)
    generator = [i for i, (_, logical, _) in enumerate(requests) if logical == "DockerTLS"]
    assert [requests[i] for i in generator] == [("Update", "DockerTLS", "renewed")] * 2
    failing_getter = requests.index(("Update", "DockerTLSServerKey", ""))
    assert generator[0] < failing_getter < generator[1]


def test_a_rack_change_replaces_the_bundle_and_cleans_up_the_old_one(stacks: Stacks) -> None:
    stack, rack, new_rack = _unique("replace"), _unique("rack"), _unique("rack")
    old, new = BundleNames.for_rack(rack), BundleNames.for_rack(new_rack)
    created = _shown(stacks.create("create", stack, Rack=rack))
    assert created.status == "CREATE_COMPLETE", created.reason

    seen = len(stacks.function_requests(stack))

    replaced = _shown(stacks.update("update Rack", stack, Rack=new_rack))

    assert replaced.status == "UPDATE_COMPLETE", replaced.reason
    assert replaced.action == "created"
    assert replaced.fingerprint != created.fingerprint
    assert set(new.material) <= set(stacks.bundle_digests(new.prefix))
    assert stacks.bundle_digests(old.prefix) == {}
    assert set(old.material) <= set(replaced.removed)
    resource = stacks.resource(stack, "DockerTLS")
    assert resource["PhysicalResourceId"] == new.prefix
    assert stacks.user_data_ca(stack) == stacks.bundle(new.prefix)[new.cert(Item.CA)]
    # The old id's Delete came last, in the cleanup phase, after every resource was updated.
    requests = _requests_during(stacks, stack, seen)
    assert requests[0] == ("Update", "DockerTLS", "created")
    assert requests[-1][:2] == ("Delete", "DockerTLS")
    assert {r[1] for r in requests[:-1]} == {
        "DockerTLS",
        "DockerTLSCA",
        "DockerTLSServerCert",
        "DockerTLSServerKey",
    }
    assert all(r[0] == "Update" for r in requests[:-1])


def test_a_failed_rack_change_keeps_the_old_bundle(stacks: Stacks) -> None:
    """The replaced bundle's Delete comes in the cleanup phase, after every resource was
    updated: when a later resource fails, the old bundle is still there and the new one goes.
    (The engine records no cleanup-phase events to look at; this is what they would show.)"""
    stack, rack, new_rack = _unique("replace"), _unique("rack"), _unique("rack")
    old, new = BundleNames.for_rack(rack), BundleNames.for_rack(new_rack)
    created = _shown(stacks.create("create", stack, Rack=rack))
    assert created.status == "CREATE_COMPLETE", created.reason
    before = stacks.bundle_digests(old.prefix)

    failed = _shown(
        stacks.update(
            "update Rack with RSA-4096 (fails)", stack, Rack=new_rack, KeyAlgorithm="RSA-4096"
        )
    )

    assert failed.status == "UPDATE_ROLLBACK_COMPLETE"
    assert failed.reason.startswith("DockerTLSServerKey:")
    assert stacks.bundle_digests(old.prefix) == before
    assert stacks.bundle_digests(new.prefix) == {}
    assert stacks.resource(stack, "DockerTLS")["PhysicalResourceId"] == old.prefix
    assert failed.fingerprint == created.fingerprint


def test_a_staged_rotation_through_stack_updates(stacks: Stacks) -> None:
    stack, rack = _unique("rotation"), _unique("rack")
    names = BundleNames.for_rack(rack)

    def stage(label: str, **parameters: str) -> Step:
        step = _shown(stacks.update(label, stack, **parameters))
        # At every stage, what instances install as ca.pem is what the stack says is trusted,
        # in the same order (signer first), and what SSM holds.
        installed = _trusted_as_installed(stacks, stack)
        assert installed == step.trusted
        assert stacks.user_data_ca(stack) == stacks.bundle(names.prefix)[names.cert(Item.CA)]
        assert step.fingerprint == step.trusted[0]
        return step

    created = _shown(stacks.create("create", stack, Rack=rack))
    assert created.status == "CREATE_COMPLETE", created.reason
    old = created.fingerprint

    introduced = stage("introduce", RotationStage="introduce")
    assert (introduced.status, introduced.action) == ("UPDATE_COMPLETE", "introduced")
    assert introduced.trusted[0] == old
    assert len(introduced.trusted) == 2
    new = introduced.trusted[1]

    # The switch happens (the generator answers switched), then a getter fails: RSA-4096 leaves
    # are too large for the server key getter's response. The rollback sends the generator
    # its introduce properties again, and it takes the switch back.
    seen = len(stacks.function_requests(stack))
    failed = stage("switch with RSA-4096 (fails)", RotationStage="switch", KeyAlgorithm="RSA-4096")
    assert failed.status == "UPDATE_ROLLBACK_COMPLETE"
    generator = [r for r in _requests_during(stacks, stack, seen) if r[1] == "DockerTLS"]
    assert len(generator) == 2  # the switch, and the rollback's Update back to introduce
    assert generator[0] == ("Update", "DockerTLS", "switched")
    assert failed.reason.startswith("DockerTLSServerKey:")
    assert failed.trusted == (old, new)

    switched = stage("switch", RotationStage="switch")
    assert (switched.status, switched.action) == ("UPDATE_COMPLETE", "switched")
    assert switched.trusted == (new, old)

    retired = stage("retire", RotationStage="")
    assert (retired.status, retired.action) == ("UPDATE_COMPLETE", "retired")
    assert retired.trusted == (new,)


def test_a_second_stack_on_the_same_rack_leaves_the_first_bundle_alone(stacks: Stacks) -> None:
    """Issue 17's ownership: written against it, fails on the code before it."""
    first, second, rack = _unique("owner"), _unique("user"), _unique("rack")
    names = BundleNames.for_rack(rack)
    created = _shown(stacks.create("first stack", first, Rack=rack))
    assert created.status == "CREATE_COMPLETE", created.reason
    bundle = stacks.bundle_digests(names.prefix)
    assert set(names.material) <= set(bundle)

    user = _shown(stacks.create("second stack, same Rack", second, Rack=rack))
    assert user.status == "CREATE_COMPLETE", user.reason
    assert user.action == "reused"
    assert user.written == ()
    assert stacks.bundle_digests(names.prefix) == bundle

    deleted = _shown(stacks.delete("delete the second stack", second))
    assert deleted.status == "DELETE_COMPLETE"
    assert stacks.bundle_digests(names.prefix) == bundle, (
        "the second stack's Delete removed the bundle"
    )

    failing = with_failing_resource(stacks.template.body)
    rolled_back = _shown(stacks.create("second stack, failing", second, body=failing, Rack=rack))
    assert rolled_back.status == "ROLLBACK_COMPLETE"
    assert rolled_back.reason.startswith("FailsAfterGenerator:")
    assert stacks.bundle_digests(names.prefix) == bundle, (
        "the second stack's rollback removed the bundle"
    )
    _shown(stacks.delete("delete the rolled-back stack", second))
    assert stacks.bundle_digests(names.prefix) == bundle

    assert stacks.outputs(first)["CAFingerprint"] == created.fingerprint


def test_delete_removes_every_parameter(stacks: Stacks) -> None:
    stack, rack = _unique("delete"), _unique("rack")
    names = BundleNames.for_rack(rack)
    created = _shown(stacks.create("create", stack, Rack=rack))
    assert created.status == "CREATE_COMPLETE", created.reason
    assert stacks.bundle_digests(names.prefix)

    deleted = _shown(stacks.delete("delete", stack))

    assert deleted.status == "DELETE_COMPLETE"
    assert set(names.material) <= set(deleted.removed)
    assert stacks.bundle_digests(names.prefix) == {}


def test_the_functions_log_lines_are_json_and_hold_no_key_material(stacks: Stacks) -> None:
    stack, rack = _unique("logs"), _unique("rack")
    created = _shown(stacks.create("create", stack, Rack=rack))
    assert created.status == "CREATE_COMPLETE", created.reason
    _shown(stacks.update("KeyAlgorithm=RSA-4096", stack, KeyAlgorithm="RSA-4096"))

    lines = stacks.function_log(stack)

    requests = stacks.function_requests(stack)
    assert ("Create", "DockerTLSServerKey") in {(r.request_type, r.logical_id) for r in requests}
    runtime = ("START RequestId:", "END RequestId:", "REPORT RequestId:")
    own = [line for line in lines if not line.startswith(runtime)]
    assert own
    assert all(line.lstrip().startswith("{") for line in own)
    # PEM, and base64 of PEM (how the bundle is stored), in no line, whatever the level.
    leaks = [i for i, line in enumerate(lines) if "PRIVATE KEY" in line or "LS0tLS1CRUdJTi" in line]
    assert leaks == []
