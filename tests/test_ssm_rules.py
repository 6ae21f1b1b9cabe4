"""SSM's rules in the stand-ins (devkit.ssm_rules): moto refuses what real SSM refuses.

Each rule is shown over boto3 against the in-process moto the tests use, over HTTP against the
devkit's moto server (``devkit.ssm_server.local_ssm``), and, in the full run, against the lasting
endpoint's own server process (``devkit.local_endpoint``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devkit import local_endpoint, ssm_invariants, ssm_rules
from devkit.ssm_server import local_ssm
from handler.certificates import CertificateAuthority, KeyAlgorithm
from handler.codec import bundle_pem, certificate_pem, private_key_pem, to_stored
from handler.ensure import ensure
from handler.names import BundleNames
from handler.store import ParameterStore, StoreError
from tests.conftest import props

ROOT = Path(__file__).resolve().parent.parent

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
        with ssm_rules.seeding():  # over HTTP every unseeded write is docker-tls's
            _assert_type_rule(client)


def _endpoint_client(endpoint: local_endpoint.Endpoint) -> Any:
    environment = endpoint.environment()
    return boto3.client(
        "ssm",
        endpoint_url=endpoint.url,
        region_name=environment["AWS_REGION"],
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.mark.slow
def test_lasting_endpoint_process_refuses_a_type_change(lasting_endpoint: Path) -> None:
    """The lasting endpoint's server is another process: it installs the rule itself."""
    endpoint, started = local_endpoint.start()
    assert started
    client = _endpoint_client(endpoint)
    with ssm_rules.seeding():
        _assert_type_rule(client)


# --- the bundle's invariants on every write (issue 22) ---------------------------------------

PREFIX = "72616b"
KEY_NAMES = [f"{PREFIX}-docker-tls-{s}" for s in ssm_invariants.KEY_SUFFIXES]
CERT_NAMES = [f"{PREFIX}-docker-tls-{s}" for s in ssm_invariants.CERT_SUFFIXES]
OWNER = f"{PREFIX}-docker-tls-owner"
NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def authority() -> CertificateAuthority:
    return CertificateAuthority.create(KeyAlgorithm.ECDSA_P256, validity_days=30, now=NOW)


@pytest.fixture
def project_store(ssm: Any) -> ParameterStore:
    """handler.store on in-process moto: the path every docker-tls write takes."""
    return ParameterStore(ssm, sleep=lambda _: None)


def _put(store: ParameterStore, name: str, value: str, *, secure: bool) -> list[str]:
    """Write as docker-tls does; the violations recorded, forgotten afterwards (so that this
    test's teardown does not fail on what it provoked on purpose)."""
    with contextlib.suppress(StoreError):
        store.put(name, value, secure=secure, kms_key_id=None, overwrite=True)
    return ssm_rules.take_violations()


def _key(authority: CertificateAuthority) -> str:
    return to_stored(private_key_pem(authority.key))


def _cert(authority: CertificateAuthority) -> str:
    return to_stored(certificate_pem(authority.cert))


@pytest.mark.parametrize("name", KEY_NAMES)
def test_a_private_key_written_as_string_is_refused_and_recorded(
    project_store: ParameterStore, ssm: Any, authority: CertificateAuthority, name: str
) -> None:
    with pytest.raises(StoreError) as raised:
        project_store.put(name, _key(authority), secure=False, kms_key_id=None, overwrite=True)
    assert raised.value.code == ssm_rules.VIOLATION
    assert ssm_rules.take_violations() == [
        f"{name}: a private key written as String, not SecureString"
    ]
    assert ssm.get_parameters(Names=[name])["Parameters"] == []  # nothing was stored
    # the same key as a SecureString is what docker-tls writes: allowed
    assert _put(project_store, name, _key(authority), secure=True) == []


@pytest.fixture(scope="module")
def http_ssm() -> Iterator[Any]:
    """moto's server as the devkit runs it, over HTTP: the caller's stack is out of its sight."""
    with local_ssm() as endpoint:
        yield boto3.client("ssm", endpoint_url=endpoint.endpoint, region_name="us-east-1")


def test_over_http_every_write_is_checked_unless_the_test_seeds(
    http_ssm: Any, authority: CertificateAuthority
) -> None:
    """A convox-era String key seeded by the test stays allowed; the same write unseeded is
    refused, and so is an overwrite that names no Type (the key stays a String)."""
    name = f"{PREFIX}-docker-tls-key"
    with ssm_rules.seeding():
        http_ssm.put_parameter(Name=name, Value=_key(authority), Type="String", Overwrite=True)
    assert ssm_rules.take_violations() == []
    for extra in ({"Type": "String"}, {}):
        with pytest.raises(ClientError) as raised:
            http_ssm.put_parameter(Name=name, Value=_key(authority), Overwrite=True, **extra)
        assert raised.value.response["Error"]["Code"] == ssm_rules.VIOLATION
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert ssm_rules.take_violations() == [
            f"{name}: a private key written as String, not SecureString"
        ]
    with ssm_rules.seeding():
        http_ssm.delete_parameter(Name=name)


def test_a_test_writing_directly_in_process_is_seeding(
    ssm: Any, authority: CertificateAuthority
) -> None:
    """In process, a write is docker-tls's only with handler/ or docker_tls_cli/ on the stack:
    the existing tests seed convox-era values with plain boto3 calls, unchanged."""
    ssm.put_parameter(Name=KEY_NAMES[0], Value=_key(authority), Type="String")
    ssm.put_parameter(Name=f"{PREFIX}-version-track", Value="20180101", Type="String")
    ssm.put_parameter(Name="anything", Value="not PEM", Type="String")
    assert ssm_rules.take_violations() == []


@pytest.mark.parametrize(
    "name",
    [
        f"{PREFIX}-version-track",  # the convox handler's: only ever deleted
        "rak-docker-tls-ca-key",  # not hex
        f"{PREFIX.upper()}-docker-tls-ca-key",  # not lower-case
        "72616-docker-tls-ca-key",  # odd: no rack's UTF-8 in hex
        f"{PREFIX}-docker-tls-ca-keys",
        f"/{PREFIX}-docker-tls-ca-key",
        f"{PREFIX}-docker-tls-version-track",
        f"{PREFIX}-docker-tls-next-ca-cert",
    ],
)
def test_a_name_outside_a_rack_bundle_is_refused(
    project_store: ParameterStore, authority: CertificateAuthority, name: str
) -> None:
    [violation] = _put(project_store, name, _key(authority), secure=True)
    assert violation.startswith(f"{name}: not a rack bundle's parameter")


def test_every_bundle_name_takes_its_kind_of_value(
    project_store: ParameterStore, authority: CertificateAuthority
) -> None:
    chain = to_stored(bundle_pem([authority.cert, authority.cert]))
    for name in CERT_NAMES:
        assert _put(project_store, name, _cert(authority), secure=False) == []
        assert _put(project_store, name, chain, secure=False) == []  # ca.pem: several CAs
    for name in KEY_NAMES:
        assert _put(project_store, name, _key(authority), secure=True) == []
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _put(project_store, KEY_NAMES[0], to_stored(private_key_pem(rsa_key)), secure=True) == []
    owner = json.dumps({"StackId": "arn:aws:cloudformation:x", "LogicalResourceId": "DockerTLS"})
    assert _put(project_store, OWNER, owner, secure=False) == []


def _pkcs8(authority: CertificateAuthority, encryption: Any) -> bytes:
    return authority.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _bad_values(authority: CertificateAuthority) -> dict[str, tuple[str, str]]:
    """label → (a value docker-tls must never write, the problem the stand-in names)."""
    cert_pem, key_pem = certificate_pem(authority.cert), private_key_pem(authority.key)
    mime = base64.encodebytes(cert_pem).decode("ascii")  # base64 in 76-column lines
    return {
        "PEM itself": (cert_pem.decode(), "is not standard padded one-line base64"),
        "MIME lines": (mime, "is not standard padded one-line base64"),
        # a P-256 SEC1 key's PEM is 227 bytes: its base64 ends in "=="
        "unpadded": (to_stored(key_pem).rstrip("="), "is not standard padded one-line base64"),
        "URL-safe": (
            base64.urlsafe_b64encode(cert_pem + b"\xfb\xff").decode(),
            "is not standard padded one-line base64",
        ),
        "DER": (
            base64.b64encode(authority.cert.public_bytes(serialization.Encoding.DER)).decode(),
            "decodes to something other than PEM blocks alone",
        ),
        "trailing text": (
            to_stored(cert_pem + b"junk\n"),
            "decodes to something other than PEM blocks alone",
        ),
        "CRLF": (
            to_stored(cert_pem.replace(b"\n", b"\r\n")),
            "decodes to something other than PEM blocks alone",
        ),
        "empty PEM": (to_stored(b""), "is not standard padded one-line base64"),
        "a key under a certificate name": (
            to_stored(key_pem),
            "holds a PEM block that is not a CERTIFICATE",
        ),
        "a certificate under a key name": (
            to_stored(cert_pem),
            "is not exactly one unencrypted private key PEM block",
        ),
        "two keys": (
            to_stored(key_pem + key_pem),
            "is not exactly one unencrypted private key PEM block",
        ),
        "an encrypted key": (
            to_stored(_pkcs8(authority, serialization.BestAvailableEncryption(b"pw"))),
            "is not exactly one unencrypted private key PEM block",
        ),
        "a broken certificate": (
            to_stored(cert_pem.replace(cert_pem[100:104], b"AAAA")),
            "holds a CERTIFICATE block that does not parse",
        ),
        "a broken key": (
            to_stored(b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"),
            "holds a private key block that does not parse",
        ),
    }


_BAD = [
    ("PEM itself", "ca-cert"),
    ("MIME lines", "server-cert"),
    ("unpadded", "key"),
    ("URL-safe", "previous-ca-cert"),
    ("DER", "ca-cert"),
    ("trailing text", "ca-cert"),
    ("CRLF", "cert"),
    ("empty PEM", "ca-cert"),
    ("a key under a certificate name", "server-cert"),
    ("a certificate under a key name", "ca-key"),
    ("two keys", "next-ca-key"),
    ("an encrypted key", "server-key"),
    ("a broken certificate", "ca-cert"),
    ("a broken key", "key"),
]


@pytest.mark.parametrize(("label", "suffix"), _BAD, ids=[label for label, _ in _BAD])
def test_a_value_that_is_not_base64_of_the_right_pem_is_refused(
    project_store: ParameterStore, authority: CertificateAuthority, label: str, suffix: str
) -> None:
    value, problem = _bad_values(authority)[label]
    name = f"{PREFIX}-docker-tls-{suffix}"
    secure = suffix in ssm_invariants.KEY_SUFFIXES
    assert _put(project_store, name, value, secure=secure) == [f"{name}: the value {problem}"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not json", "is not a JSON object"),
        ("[]", "is not a JSON object of exactly StackId and LogicalResourceId"),
        ('{"StackId": "s"}', "is not a JSON object of exactly StackId and LogicalResourceId"),
        (
            '{"StackId": "s", "LogicalResourceId": "l", "Extra": 1}',
            "is not a JSON object of exactly StackId and LogicalResourceId",
        ),
        (
            '{"StackId": "", "LogicalResourceId": "l"}',
            "has an owner field that is not a non-empty string",
        ),
        (
            '{"StackId": 1, "LogicalResourceId": "l"}',
            "has an owner field that is not a non-empty string",
        ),
    ],
)
def test_the_owner_parameter_holds_exactly_its_json_object(
    project_store: ParameterStore, value: str, problem: str
) -> None:
    [violation] = _put(project_store, OWNER, value, secure=False)
    assert violation.startswith(f"{OWNER}: the value {problem}")


def test_a_delete_outside_a_bundle_is_refused_a_bundle_s_is_not(
    project_store: ParameterStore, ssm: Any
) -> None:
    for name in ("other", f"{PREFIX}-version-track", CERT_NAMES[0]):
        ssm.put_parameter(Name=name, Value="seeded", Type="String")
    with pytest.raises(StoreError):
        project_store.delete(["other", f"{PREFIX}-version-track", CERT_NAMES[0]])
    assert ssm_rules.take_violations() == [
        "other: deleting a parameter that is not a rack bundle's"
    ]
    assert sorted(project_store.delete([f"{PREFIX}-version-track", CERT_NAMES[0]])) == sorted(
        [f"{PREFIX}-version-track", CERT_NAMES[0]]
    )
    assert ssm_rules.take_violations() == []


def test_nothing_is_written_or_deleted_inside_a_read_only_scope(
    project_store: ParameterStore, ssm: Any, authority: CertificateAuthority
) -> None:
    """Even a write that would be fine elsewhere, and even a test's own direct write."""
    with ssm_rules.read_only("plan"):
        assert _put(project_store, KEY_NAMES[0], _key(authority), secure=True) == [
            f"{KEY_NAMES[0]}: written during plan, which writes nothing"
        ]
        with pytest.raises(ClientError):
            ssm.put_parameter(Name=CERT_NAMES[0], Value=_cert(authority), Type="String")
        with contextlib.suppress(StoreError):
            project_store.delete([CERT_NAMES[0]])
    assert ssm_rules.take_violations() == [
        f"{CERT_NAMES[0]}: written during plan, which writes nothing",
        f"{CERT_NAMES[0]}: deleted during plan, which writes nothing",
    ]
    assert ssm.get_parameters(Names=[KEY_NAMES[0], CERT_NAMES[0]])["Parameters"] == []
    # the scope ends with the block
    assert _put(project_store, KEY_NAMES[0], _key(authority), secure=True) == []


def test_a_handler_that_writes_keys_as_string_is_caught_even_if_it_swallows_the_error(
    store: ParameterStore, ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mutant issue 22 found (a key written back as String on one path), simulated on every
    path: the handler's ensure with a store that drops ``secure`` and hides every error."""
    original = ParameterStore.put

    def careless_put(self: ParameterStore, name: str, value: str, **kwargs: Any) -> int:
        with contextlib.suppress(StoreError):
            return original(self, name, value, **{**kwargs, "secure": False})
        return 0

    monkeypatch.setattr(ParameterStore, "put", careless_put)
    # It never converges (nothing it writes is stored) and gives up; whatever it answers, the
    # stand-in has recorded each refused write.
    with contextlib.suppress(Exception):
        ensure(store, props("rak"), rotate=False, now=NOW)
    assert set(ssm_rules.take_violations()) == {
        f"{name}: a private key written as String, not SecureString"
        for name in BundleNames.for_rack("rak").material
        if name.endswith("key")
    }


_FAILING_TEST = """
from handler.store import ParameterStore

def test_writes_a_key_as_string(ssm):
    store = ParameterStore(ssm, sleep=lambda _: None)
    try:
        store.put("72616b-docker-tls-ca-key", "x", secure=False, kms_key_id=None, overwrite=True)
    except Exception:
        pass  # the code under test swallows the refusal

def test_plan_that_writes(ssm):
    from devkit import ssm_rules
    with ssm_rules.read_only("plan"):
        try:
            ssm.put_parameter(Name="72616b-docker-tls-cert", Value="x", Type="String")
        except Exception:
            pass

def test_a_clean_one(ssm):
    ssm.put_parameter(Name="72616b-docker-tls-ca-key", Value="seeded", Type="String")
"""


@pytest.mark.slow
def test_the_suite_fails_a_test_whose_code_breaks_an_invariant(tmp_path: Path) -> None:
    """A whole pytest run with the project's conftest: the fixture fails the test at teardown
    though the code under test swallowed the error."""
    (tmp_path / "test_breaks.py").write_text(_FAILING_TEST, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_breaks.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "3 passed" in output and "2 errors" in output, output
    assert "ERROR at teardown of test_writes_a_key_as_string" in output
    assert "72616b-docker-tls-ca-key: a private key written as String" in output
    assert "ERROR at teardown of test_plan_that_writes" in output
    assert "72616b-docker-tls-cert: written during plan, which writes nothing" in output


@pytest.mark.slow
def test_the_lasting_endpoint_process_holds_a_read_only_scope_and_records_for_the_test(
    lasting_endpoint: Path, authority: CertificateAuthority
) -> None:
    """The endpoint runs in a process of its own: it reads the scope from the rules directory
    it inherited at each request and records there what it refused, for this test's teardown."""
    endpoint, _ = local_endpoint.start()
    client = _endpoint_client(endpoint)
    name = KEY_NAMES[0]
    with ssm_rules.read_only("export"), pytest.raises(ClientError) as raised:
        client.put_parameter(Name=name, Value=_key(authority), Type="SecureString")
    assert raised.value.response["Error"]["Code"] == ssm_rules.VIOLATION
    assert ssm_rules.take_violations() == [f"{name}: written during export, which writes nothing"]
    # out of the scope the same write is what docker-tls writes: allowed
    client.put_parameter(Name=name, Value=_key(authority), Type="SecureString")
    assert ssm_rules.take_violations() == []
