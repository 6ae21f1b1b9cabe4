"""SSM's rules in the stand-ins (devkit.ssm_rules): moto refuses what real SSM refuses.

Each rule is shown over boto3 against the in-process moto the tests use, over HTTP against the
devkit's moto server (``devkit.ssm_server.local_ssm``), and, in the full run, against the lasting
endpoint's own server process (``devkit.local_endpoint``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devkit import local_endpoint, ssm_rules
from devkit.ssm_server import local_ssm

NAME = "72616b-docker-tls-ca-key"  # hex("rak"): a rack bundle's name


def _type_of(client: Any, name: str) -> str:
    return str(client.get_parameter(Name=name)["Parameter"]["Type"])


def _refused(client: Any, *, stored: str, requested: str) -> ClientError:
    client.put_parameter(Name=NAME, Value="first", Type=stored)
    with pytest.raises(ClientError) as caught:
        client.put_parameter(Name=NAME, Value="second", Type=requested, Overwrite=True)
    return caught.value


def _assert_type_rule(client: Any) -> None:
    """String → SecureString and back are refused with SSM's code and HTTP 400, the stored
    parameter left as it was; the same type, or no type, overwrites."""
    for stored, requested in (("String", "SecureString"), ("SecureString", "String")):
        error = _refused(client, stored=stored, requested=requested)
        assert error.response["Error"]["Code"] == "HierarchyTypeMismatchException"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert _type_of(client, NAME) == stored
        found = client.get_parameter(Name=NAME, WithDecryption=True)["Parameter"]
        assert (found["Value"], found["Version"]) == ("first", 1)
        # the same type overwrites, and an overwrite without Type keeps the stored one
        assert (
            client.put_parameter(Name=NAME, Value="v2", Type=stored, Overwrite=True)["Version"] == 2
        )
        assert client.put_parameter(Name=NAME, Value="v3", Overwrite=True)["Version"] == 3
        assert _type_of(client, NAME) == stored
        client.delete_parameter(Name=NAME)
    # a deleted parameter is gone: its name may be created again with another type
    client.put_parameter(Name=NAME, Value="s", Type="String")
    client.delete_parameter(Name=NAME)
    client.put_parameter(Name=NAME, Value="k", Type="SecureString")
    assert _type_of(client, NAME) == "SecureString"


def test_in_process_moto_refuses_a_type_change(ssm: Any) -> None:
    _assert_type_rule(ssm)


def test_the_error_is_the_one_boto3_models(ssm: Any) -> None:
    """boto3 maps the code to its modelled exception class, as it would for AWS's answer."""
    ssm.put_parameter(Name=NAME, Value="a", Type="String")
    with pytest.raises(ssm.exceptions.HierarchyTypeMismatchException):
        ssm.put_parameter(Name=NAME, Value="b", Type="SecureString", Overwrite=True)


def test_without_overwrite_it_is_still_parameter_already_exists(ssm: Any) -> None:
    ssm.put_parameter(Name=NAME, Value="a", Type="String")
    with pytest.raises(ClientError) as caught:
        ssm.put_parameter(Name=NAME, Value="b", Type="SecureString")
    assert caught.value.response["Error"]["Code"] == "ParameterAlreadyExists"


def test_install_is_idempotent() -> None:
    from moto.ssm.models import SimpleSystemManagerBackend

    patched = SimpleSystemManagerBackend.put_parameter
    ssm_rules.install()
    ssm_rules.install()
    assert SimpleSystemManagerBackend.put_parameter is patched
    assert ssm_rules.installed()


def test_devkit_server_refuses_a_type_change_over_http() -> None:
    """moto's server as the devkit runs it (make invoke, sam-local, the e2e tests)."""
    with local_ssm() as endpoint:
        client = boto3.client("ssm", endpoint_url=endpoint.endpoint, region_name="us-east-1")
        _assert_type_rule(client)


@pytest.mark.slow
def test_lasting_endpoint_process_refuses_a_type_change(lasting_endpoint: Path) -> None:
    """The lasting endpoint's server is another process: it installs the rule itself."""
    endpoint, started = local_endpoint.start()
    assert started
    client = boto3.client(
        "ssm",
        endpoint_url=endpoint.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    _assert_type_rule(client)
