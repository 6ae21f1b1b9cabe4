"""The stack engine's harness itself: the substitutions are exactly the documented ones, the
verdicts of ``make stack-local`` can say no, and stopping the engine stops its Lambdas.

The substitution and verdict tests need no engine (fast); the stop test starts one.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from devkit import stack_local
from devkit.stack_deploy import (
    FAILING_RESOURCE,
    Code,
    for_engine,
    read_template,
    with_failing_resource,
)
from devkit.stack_engine import missing, stack_engine
from devkit.stack_lifecycle import Step, certificate_fingerprints

CODE = Code("bucket", "docker-tls/artifact.zip", 1)


def _differences(shipped: Any, engine: Any, path: str = "") -> set[str]:
    """The paths at which two templates differ."""
    if isinstance(shipped, dict) and isinstance(engine, dict):
        found: set[str] = set()
        for key in set(shipped) | set(engine):
            if key not in shipped or key not in engine:
                found.add(f"{path}/{key}")
            else:
                found |= _differences(shipped[key], engine[key], f"{path}/{key}")
        return found
    return set() if shipped == engine else {path}


def test_the_engine_template_differs_from_the_shipped_one_only_where_documented() -> None:
    shipped = read_template()
    role_policies = [
        name for name, r in shipped["Resources"].items() if r["Type"] == "AWS::IAM::RolePolicy"
    ]

    engine = for_engine(shipped, CODE, "/seeded/ami")

    expected = {"/Resources/DockerTlsFunction/Properties/CodeUri"}
    for name in role_policies:
        expected |= {
            f"/Resources/{name}/Type",
            f"/Resources/{name}/Properties/RoleName",
            f"/Resources/{name}/Properties/Roles",
        }
    body = json.loads(engine.body)
    assert _differences(shipped, body) == expected
    assert body["Resources"]["DockerTlsFunction"]["Properties"]["CodeUri"] == {
        "Bucket": "bucket",
        "Key": "docker-tls/artifact.zip",
    }
    for name in role_policies:
        policy = body["Resources"][name]
        assert policy["Type"] == "AWS::IAM::Policy"
        assert policy["Properties"]["Roles"] == [
            shipped["Resources"][name]["Properties"]["RoleName"]
        ]
    # The AMI parameter keeps its SSM type: only its value is ours.
    assert body["Parameters"]["ImageId"] == shipped["Parameters"]["ImageId"]
    assert engine.parameters == {"ImageId": "/seeded/ami", "Architecture": "x86_64"}
    assert shipped == read_template()  # the shipped data was not changed in place


def test_the_failing_resource_comes_after_everything_and_names_no_function() -> None:
    engine = for_engine(read_template(), CODE, "/seeded/ami")

    failing = json.loads(with_failing_resource(engine.body))

    added = set(failing["Resources"]) - set(json.loads(engine.body)["Resources"])
    assert added == {FAILING_RESOURCE}
    resource = failing["Resources"][FAILING_RESOURCE]
    assert resource["DependsOn"] == ["DockerHostLaunchTemplate"]
    assert "no-such-function" in json.dumps(resource["Properties"]["ServiceToken"])


def _step(**fields: Any) -> Step:
    values: dict[str, Any] = {
        "label": "x",
        "stack": "s",
        "status": "UPDATE_COMPLETE",
        "seconds": 0.1,
        "action": "reused",
    }
    values.update(fields)
    return Step(**values)


def test_the_verdicts_can_say_no() -> None:
    check = stack_local._expect("UPDATE_COMPLETE", "reused", writes=False)
    assert check(_step()) is None
    assert "status" in str(check(_step(status="UPDATE_ROLLBACK_COMPLETE")))
    assert "Action" in str(check(_step(action="renewed")))
    assert "wrote 1" in str(check(_step(written=("p-docker-tls-cert",))))
    ca = "-docker-tls-ca-cert"
    assert stack_local._same_ca({f"p{ca}": "a"}, {f"p{ca}": "a"}) is None
    assert stack_local._same_ca({f"p{ca}": "b"}, {f"p{ca}": "a"}) == "the CA changed"


def test_a_step_line_holds_a_short_fingerprint_and_counts() -> None:
    line = _step(fingerprint="ab" * 32, written=("a", "b"), removed=("c",)).line()
    assert "abababababababab…" in line
    assert "ab" * 32 not in line
    assert "2 written, 1 removed" in line


def test_fingerprints_are_read_in_order() -> None:
    import datetime as dt

    from cryptography.hazmat.primitives import hashes

    from handler.certificates import CertificateAuthority, KeyAlgorithm
    from handler.codec import certificate_pem

    now = dt.datetime.now(dt.UTC)
    first, second = (
        CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=1, now=now)
        for _ in range(2)
    )
    pem = certificate_pem(second.cert) + certificate_pem(first.cert)
    expected = tuple(c.cert.fingerprint(hashes.SHA256()).hex() for c in (second, first))
    assert certificate_fingerprints(pem) == expected


@pytest.mark.engine
@pytest.mark.slow
def test_stopping_the_engine_stops_its_lambda_workers(tmp_path: Path) -> None:
    reason = missing()
    if reason:
        pytest.skip(reason)  # a failure under CI=true (tests/conftest.py)
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr(
            "app.py", "import os\ndef handler(event, context):\n    return os.getpid()\n"
        )
    with stack_engine(tmp_path / "engine") as engine:
        group = engine.process_group
        functions = engine.client("lambda")
        functions.create_function(
            FunctionName="pid",
            Runtime="python3.13",
            Role="arn:aws:iam::000000000000:role/any",
            Handler="app.handler",
            Code={"ZipFile": code.getvalue()},
            Timeout=120,  # a cold worker on a loaded machine can take seconds
        )
        answer = functions.invoke(FunctionName="pid")
        payload = answer["Payload"].read().decode()
        assert "FunctionError" not in answer, payload
        worker = int(payload)
        assert worker != group
        assert os.getpgid(worker) == group  # the worker is in the engine's session
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)
