"""What every ``docker-tls`` command shares: exit codes, errors, reading a rack's bundle from
SSM, and turning ``--property`` values into the generator's properties."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError
from cryptography import x509

from docker_tls_cli import calm
from docker_tls_cli.lambda_code import (
    BundleNames,
    GeneratorProperties,
    Item,
    KeyAlgorithm,
    Parameter,
    ParameterStore,
    PropertyError,
    StoredBundle,
    StoreError,
    Unreadable,
    certificate_from_stored,
    parse_generator,
    private_key_from_stored,
    subject_alt_names,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CREDENTIALS = 4
EXIT_ACCESS_DENIED = 5
EXIT_UNREACHABLE = calm.EXIT_UNREACHABLE  # the endpoint refused, or never answered in time

#: Error codes (botocore exception names and AWS codes) that mean "who are you?", not "no".
_CREDENTIAL_CODES = frozenset(
    {
        "NoCredentialsError",
        "PartialCredentialsError",
        "CredentialRetrievalError",
        "NoRegionError",
        "ProfileNotFound",
        "TokenRetrievalError",
        "SSOTokenLoadError",
        "UnauthorizedSSOTokenError",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
    }
)


class CliError(Exception):
    """A failure to report on stderr with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


#: What to run when a local endpoint does not answer.
LOCAL_HINT = f"{calm.LOCAL_ENDPOINT_HINT}, or add --local (it starts one)"


def store_failure(error: StoreError, needs: str, endpoint: str | None = None) -> CliError:
    no_answer = calm.unreachable(error.code, endpoint, LOCAL_HINT)
    if no_answer is not None:
        return CliError(no_answer, EXIT_UNREACHABLE)
    if error.code == "NoRegionError":
        return CliError(
            "no AWS region: set AWS_DEFAULT_REGION or a profile's region", EXIT_CREDENTIALS
        )
    if error.code == "ProfileNotFound":
        return CliError(f"{error}: check AWS_PROFILE and ~/.aws/config", EXIT_CREDENTIALS)
    if error.code in _CREDENTIAL_CODES:
        return CliError(
            f"no usable AWS credentials ({error.code}): configure the standard chain "
            "(AWS_PROFILE or environment keys, SSO login, instance role)",
            EXIT_CREDENTIALS,
        )
    if "AccessDenied" in error.code:
        return CliError(f"access denied: {error}. This command needs {needs}.", EXIT_ACCESS_DENIED)
    return CliError(f"{error}", EXIT_ERROR)


def as_store_error(operation: str, error: Exception) -> StoreError:
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        return StoreError(operation, info.get("Code", "Unknown"), info.get("Message", ""))
    return StoreError(operation, type(error).__name__, str(error))


# --- Reading the bundle ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """A rack's parameters as one ``GetParameters`` call returned them."""

    rack: str
    names: BundleNames
    parameters: Mapping[str, Parameter]
    region: str | None

    @property
    def values(self) -> dict[str, str]:
        return {name: parameter.value for name, parameter in self.parameters.items()}

    @functools.cached_property
    def bundle(self) -> StoredBundle:
        """The values decoded once, as the Lambda's rules read them."""
        return StoredBundle.decode(self.values, self.names)

    @property
    def empty(self) -> bool:
        return not any(name in self.parameters for name in self.names.material)

    def not_found(self) -> CliError:
        where = f" in {self.region}" if self.region else ""
        return CliError(
            f"no docker-tls parameters for Rack {self.rack!r} (names {self.names.prefix}-docker-"
            f"tls-*){where}: check --rack, the region (AWS_DEFAULT_REGION) and the account",
            EXIT_NOT_FOUND,
        )


def read_bundle(store: ParameterStore, rack: str) -> Stored:
    names = BundleNames.for_rack(rack)
    try:
        # The handler reads the ten in one call; an operator's read adds the convox handler's
        # legacy parameter, which plan and inspect report (a second call, not the Lambda's).
        parameters = store.read((*names.everything, names.version_track))
    except StoreError as error:
        raise store_failure(
            error,
            "ssm:GetParameters on the bundle's parameters and kms:Decrypt on its key",
            _endpoint(store),
        ) from None
    region: str | None = None
    with suppress(AttributeError, BotoCoreError):
        region = store.client.meta.region_name
    return Stored(rack, names, parameters, region)


def _endpoint(store: ParameterStore) -> str | None:
    with suppress(AttributeError, BotoCoreError):
        return str(store.client.meta.endpoint_url)
    return None


# --- Properties -----------------------------------------------------------------------------


def property_pairs(pairs: Sequence[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"--property {pair!r} is not KEY=VALUE", EXIT_USAGE)
        if key == "Rack":
            raise CliError("--property Rack=… is not allowed: use --rack", EXIT_USAGE)
        if key in given:
            raise CliError(f"--property {key} is given twice", EXIT_USAGE)
        given[key] = value
    return given


def parse_properties(rack: str, given: Mapping[str, str], now: dt.datetime) -> GeneratorProperties:
    try:
        return parse_generator({**given, "Rack": rack}, now)
    except PropertyError as error:
        prefix = "--rack" if error.name == "Rack" else "--property"
        raise CliError(f"{prefix}: {error}", EXIT_USAGE) from None


def stored_cert(values: Mapping[str, str], name: str) -> x509.Certificate | None:
    try:
        return certificate_from_stored(values[name]) if name in values else None
    except Unreadable:
        return None


def stored_algorithm(values: Mapping[str, str], names: BundleNames) -> KeyAlgorithm | None:
    for item in (Item.CLIENT, Item.SERVER):
        value = values.get(names.key(item))
        if value is None:
            continue
        try:
            algorithm = KeyAlgorithm.of(private_key_from_stored(value))
        except Unreadable:
            continue
        if algorithm is not None:
            return algorithm
    return None


def health_properties(
    stored: Stored, given: Mapping[str, str], now: dt.datetime
) -> tuple[GeneratorProperties, dict[str, str]]:
    """Properties to judge health against: the given ones, and for ``KeyAlgorithm`` and
    ``ServerSubjectAltNames`` not given, what the stored leaves have (so that health is about
    the material, not about defaults the stack may not use). Returns where each came from."""
    chosen = dict(given)
    origin = {key: "given" for key in given}
    if "KeyAlgorithm" not in chosen:
        algorithm = stored_algorithm(stored.values, stored.names)
        if algorithm is not None:
            chosen["KeyAlgorithm"], origin["KeyAlgorithm"] = algorithm.value, "stored"
    if "ServerSubjectAltNames" not in chosen:
        server = stored_cert(stored.values, stored.names.cert(Item.SERVER))
        sans = list(subject_alt_names(server)) if server is not None else []
        if sans:
            chosen["ServerSubjectAltNames"] = ",".join(sans)
            origin["ServerSubjectAltNames"] = "stored"
    stage = stored.bundle.stage
    if stage is not None and "RotationStage" not in chosen:
        chosen["RotationStage"], origin["RotationStage"] = stage.value, "stored"
    try:
        props = parse_generator({**chosen, "Rack": stored.rack}, now)
    except PropertyError:
        # A stored oddity: fall back to the given ones.
        props = parse_properties(stored.rack, given, now)
        origin = {key: "given" for key in given}
    shown = {
        "KeyAlgorithm": props.key_algorithm.value,
        "ServerSubjectAltNames": ",".join(props.server_subject_alt_names),
        "RenewBeforeDays": str(props.renew_before_days),
    }
    if props.rotation_stage is not None:
        shown["RotationStage"] = props.rotation_stage.value
    return props, {key: f"{value} ({origin.get(key, 'default')})" for key, value in shown.items()}


def when(moment: dt.datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None
