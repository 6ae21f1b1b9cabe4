"""``docker-tls``: what an operator asks of a rack's bundle, answered by the Lambda's own code.

* ``plan``: what a Create/Update would do right now, per item (``bundle.plan``), writing nothing;
* ``inspect``: every stored parameter's certificate facts, type, tier and each item's health;
* ``export``: the client (or ``--server``) credentials as PEM files for ``docker --tlsverify``.

Reads go through :class:`handler.store.ParameterStore` (one ``GetParameters`` call, decrypted),
decisions through :func:`handler.bundle.plan`, properties through
:func:`handler.properties.parse_generator`: there is no second copy of any rule here. Nothing
in SSM is ever written. Key material is printed nowhere; ``export`` writes it to files only.

Exit codes: 0 done, 1 other failure, 2 bad usage or ``--property``, 3 no such rack (nothing
stored), 4 no usable AWS credentials or region, 5 access denied.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from handler.bundle import BundleNames, Decision, Item, Plan, plan
from handler.certificates import (
    KeyAlgorithm,
    Purpose,
    Unreadable,
    certificate_from_stored,
    extended_key_usages,
    fingerprint,
    private_key_from_stored,
    same_key,
    subject_alt_names,
)
from handler.properties import GeneratorProperties, PropertyError, parse_generator
from handler.store import Parameter, ParameterStore, StoreError

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CREDENTIALS = 4
EXIT_ACCESS_DENIED = 5

DOCKER_TLS_PORT = 2376
_DESCRIBE_PAGES = 10

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

_EKU_NAMES = {purpose.value: purpose.eku_name for purpose in Purpose}

_ACTION_SUMMARY = {
    "created": "nothing is stored for this Rack: a new CA and leaves would be created",
    "reused": "the bundle is healthy: nothing would be written",
    "renewed": "the CA key is kept: running instances keep trusting the rack",
    "rotated": (
        "WARNING: a new CA. Every instance launched earlier trusts the old one and must be "
        "replaced, or docker exec/run against it fails"
    ),
}


class CliError(Exception):
    """A failure to report on stderr with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _store_failure(error: StoreError, needs: str) -> CliError:
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


def _as_store_error(operation: str, error: Exception) -> StoreError:
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


def _read(store: ParameterStore, rack: str) -> Stored:
    names = BundleNames.for_rack(rack)
    try:
        parameters = store.read(names.everything)
    except StoreError as error:
        raise _store_failure(
            error, "ssm:GetParameters on the bundle's parameters and kms:Decrypt on its key"
        ) from None
    region: str | None = None
    with suppress(AttributeError, BotoCoreError):
        region = store.client.meta.region_name
    return Stored(rack, names, parameters, region)


def _describe(client: SSMClient, names: Sequence[str]) -> tuple[dict[str, dict[str, Any]], str]:
    """DescribeParameters metadata (Tier, KeyId, LastModifiedDate) by name, or a note why not."""
    found: dict[str, dict[str, Any]] = {}
    token: str | None = None
    try:
        # SSM may answer a filtered describe with empty pages and a NextToken; bounded.
        for _ in range(_DESCRIBE_PAGES):
            request: dict[str, Any] = {
                "ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": list(names)}],
                "MaxResults": 50,
            }
            if token:
                request["NextToken"] = token
            page = client.describe_parameters(**request)
            for item in page.get("Parameters", []):
                found[item["Name"]] = dict(item)
            token = page.get("NextToken")
            if not token:
                break
    except (ClientError, BotoCoreError) as error:
        failure = _as_store_error("DescribeParameters", error)
        return {}, f"tier unknown: {failure} (needs ssm:DescribeParameters)"
    return found, ""


# --- Properties -----------------------------------------------------------------------------


def _property_pairs(pairs: Sequence[str]) -> dict[str, str]:
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


def _parse(rack: str, given: Mapping[str, str], now: dt.datetime) -> GeneratorProperties:
    try:
        return parse_generator({**given, "Rack": rack}, now)
    except PropertyError as error:
        prefix = "--rack" if error.name == "Rack" else "--property"
        raise CliError(f"{prefix}: {error}", EXIT_USAGE) from None


def _stored_cert(values: Mapping[str, str], name: str) -> x509.Certificate | None:
    try:
        return certificate_from_stored(values[name]) if name in values else None
    except Unreadable:
        return None


def _stored_algorithm(values: Mapping[str, str], names: BundleNames) -> KeyAlgorithm | None:
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


def _health_properties(
    stored: Stored, given: Mapping[str, str], now: dt.datetime
) -> tuple[GeneratorProperties, dict[str, str]]:
    """Properties to judge health against: the given ones, and for ``KeyAlgorithm`` and
    ``ServerSubjectAltNames`` not given, what the stored leaves have (so that health is about
    the material, not about defaults the stack may not use). Returns where each came from."""
    chosen = dict(given)
    origin = {key: "given" for key in given}
    if "KeyAlgorithm" not in chosen:
        algorithm = _stored_algorithm(stored.values, stored.names)
        if algorithm is not None:
            chosen["KeyAlgorithm"], origin["KeyAlgorithm"] = algorithm.value, "stored"
    if "ServerSubjectAltNames" not in chosen:
        server = _stored_cert(stored.values, stored.names.cert(Item.SERVER))
        sans = list(subject_alt_names(server)) if server is not None else []
        if sans:
            chosen["ServerSubjectAltNames"] = ",".join(sans)
            origin["ServerSubjectAltNames"] = "stored"
    try:
        props = parse_generator({**chosen, "Rack": stored.rack}, now)
    except PropertyError:
        props = _parse(stored.rack, given, now)  # a stored oddity: fall back to the given ones
        origin = {key: "given" for key in given}
    shown = {
        "KeyAlgorithm": props.key_algorithm.value,
        "ServerSubjectAltNames": ",".join(props.server_subject_alt_names),
        "RenewBeforeDays": str(props.renew_before_days),
    }
    return props, {key: f"{value} ({origin.get(key, 'default')})" for key, value in shown.items()}


# --- plan -----------------------------------------------------------------------------------


def _when(moment: dt.datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def plan_report(result: Plan, rack: str, now: dt.datetime) -> dict[str, Any]:
    """The plan as plain data (what ``--json`` prints)."""
    return {
        "rack": rack,
        "prefix": result.names.prefix,
        "as_of": _when(now),
        "action": result.action.value,
        "writes_anything": result.writes_anything,
        "removes_version_track": result.remove_version_track,
        "items": [
            {
                "item": p.item.value,
                "decision": p.decision.value,
                "reason": p.reason,
                "not_after": _when(p.not_after),
            }
            for p in result
        ],
    }


def _render_plan(report: Mapping[str, Any], out: TextIO) -> None:
    print(
        f"Plan for Rack {report['rack']!r} (prefix {report['prefix']}) as of {report['as_of']}",
        file=out,
    )
    print(f"  {'item':<7} {'decision':<8} {'expires':<10}  reason", file=out)
    for item in report["items"]:
        expires = (item["not_after"] or "-")[:10]
        print(
            f"  {item['item']:<7} {item['decision']:<8} {expires:<10}  {item['reason']}", file=out
        )
    print(f"Action: {report['action']}: {_ACTION_SUMMARY[report['action']]}", file=out)
    if report["removes_version_track"]:
        print(f"  and the legacy {report['prefix']}-version-track parameter is removed", file=out)
    print("(plan writes nothing)", file=out)


def cmd_plan(args: argparse.Namespace, store: ParameterStore, out: TextIO, err: TextIO) -> int:
    now = args.at
    props = _parse(args.rack, _property_pairs(args.property), now)
    stored = _read(store, props.rack)
    result = plan(stored.values, props, rotate=args.rotate, now=now)
    report = plan_report(result, props.rack, now)
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        _render_plan(report, out)
    if stored.empty:
        print(f"docker-tls: {stored.not_found()}", file=err)
        return EXIT_NOT_FOUND
    return EXIT_OK


# --- inspect --------------------------------------------------------------------------------


def _public_key_name(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA-{key.curve.name}"
    return type(key).__name__


def certificate_facts(cert: x509.Certificate) -> dict[str, Any]:
    """What an operator compares across racks and instances; all public."""
    usages = extended_key_usages(cert)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "sha256": fingerprint(cert),
        "not_before": _when(cert.not_valid_before_utc),
        "not_after": _when(cert.not_valid_after_utc),
        "subject_alt_names": list(subject_alt_names(cert)),
        "extended_key_usage": (
            None
            if usages is None
            else sorted(_EKU_NAMES.get(oid, oid.dotted_string) for oid in usages)
        ),
        "public_key": _public_key_name(cert),
    }


def _parameter_facts(
    name: str, stored: Stored, described: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    parameter = stored.parameters.get(name)
    facts: dict[str, Any] = {"name": name, "present": parameter is not None}
    if parameter is None:
        return facts
    meta = described.get(name, {})
    modified = meta.get("LastModifiedDate")
    facts.update(
        type=parameter.type,
        tier=meta.get("Tier"),
        version=parameter.version,
        last_modified=_when(modified.astimezone(dt.UTC))
        if isinstance(modified, dt.datetime)
        else None,
        kms_key_id=meta.get("KeyId"),
    )
    return facts


def inspect_report(
    stored: Stored,
    described: Mapping[str, Mapping[str, Any]],
    health: Plan,
    against: Mapping[str, str],
) -> dict[str, Any]:
    """Every parameter's facts and each item's health, as plain data (what ``--json`` prints)."""
    names = stored.names
    items: list[dict[str, Any]] = []
    for item_plan in health:
        item = item_plan.item
        cert_facts = _parameter_facts(names.cert(item), stored, described)
        key_facts = _parameter_facts(names.key(item), stored, described)
        cert: x509.Certificate | None = None
        if cert_facts["present"]:
            try:
                cert = certificate_from_stored(stored.parameters[names.cert(item)].value)
                cert_facts["certificate"] = certificate_facts(cert)
            except Unreadable as error:
                cert_facts["problem"] = f"unreadable ({error})"
        if key_facts["present"]:
            try:
                key = private_key_from_stored(stored.parameters[names.key(item)].value)
            except Unreadable as error:
                key_facts["problem"] = f"unreadable ({error})"
            else:
                algorithm = KeyAlgorithm.of(key)
                key_facts["key"] = {
                    "algorithm": algorithm.value if algorithm else type(key).__name__,
                    "matches_certificate": same_key(cert, key) if cert is not None else None,
                }
        items.append(
            {
                "item": item.value,
                "healthy": item_plan.decision is Decision.REUSE,
                "health": "healthy"
                if item_plan.decision is Decision.REUSE
                else f"{item_plan.decision.value}: {item_plan.reason}",
                "parameters": [cert_facts, key_facts],
            }
        )
    return {
        "rack": stored.rack,
        "prefix": names.prefix,
        "region": stored.region,
        "health_judged_against": dict(against),
        "action_if_updated_now": health.action.value,
        "version_track_present": health.remove_version_track,
        "items": items,
    }


def _render_inspect(report: Mapping[str, Any], note: str, out: TextIO) -> None:
    region = f" in {report['region']}" if report["region"] else ""
    print(f"Rack {report['rack']!r} (prefix {report['prefix']}){region}", file=out)
    against = ", ".join(f"{k}={v}" for k, v in report["health_judged_against"].items())
    print(f"health judged against {against}", file=out)
    for item in report["items"]:
        print(f"\n{item['item']}: {item['health']}", file=out)
        for parameter in item["parameters"]:
            if not parameter["present"]:
                print(f"  {parameter['name']}  (not stored)", file=out)
                continue
            meta = [
                parameter["type"],
                parameter["tier"] or "tier ?",
                f"v{parameter['version']}",
            ]
            if parameter.get("last_modified"):
                meta.append(f"modified {parameter['last_modified']}")
            if parameter.get("kms_key_id"):
                meta.append(f"KMS {parameter['kms_key_id']}")
            print(f"  {parameter['name']}  {'  '.join(meta)}", file=out)
            if "problem" in parameter:
                print(f"    {parameter['problem']}", file=out)
            if "certificate" in parameter:
                facts = parameter["certificate"]
                eku = facts["extended_key_usage"]
                rows = [
                    ("subject", facts["subject"]),
                    ("issuer", facts["issuer"]),
                    ("SANs", ", ".join(facts["subject_alt_names"]) or "-"),
                    ("serial", facts["serial"]),
                    ("SHA-256", facts["sha256"]),
                    ("not before", facts["not_before"]),
                    ("not after", facts["not_after"]),
                    ("EKU", "(none: any purpose)" if eku is None else ", ".join(eku) or "-"),
                    ("public key", facts["public_key"]),
                ]
                for label, value in rows:
                    print(f"    {label:<11} {value}", file=out)
            if "key" in parameter:
                key = parameter["key"]
                match = {True: "matches", False: "DOES NOT match", None: "no certificate to match"}
                print(
                    f"    {'key':<11} {key['algorithm']}, {match[key['matches_certificate']]} "
                    "the certificate",
                    file=out,
                )
    if report["version_track_present"]:
        print(
            f"\nlegacy {report['prefix']}-version-track present (the next Update removes it)",
            file=out,
        )
    if note:
        print(f"\n({note})", file=out)


def cmd_inspect(args: argparse.Namespace, store: ParameterStore, out: TextIO, err: TextIO) -> int:
    now = args.at
    given = _property_pairs(args.property)
    _parse(args.rack, given, now)  # a bad --property is refused before anything is read
    stored = _read(store, args.rack)
    if stored.empty:
        raise stored.not_found()
    props, against = _health_properties(stored, given, now)
    health = plan(stored.values, props, rotate=False, now=now)
    described, note = _describe(store.client, stored.names.everything)
    report = inspect_report(stored, described, health, against)
    if args.json:
        print(json.dumps({**report, "note": note or None}, indent=2), file=out)
    else:
        _render_inspect(report, note, out)
    return EXIT_OK


# --- export ---------------------------------------------------------------------------------


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` with ``mode`` from the first byte on, replacing ``path`` atomically."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def cmd_export(args: argparse.Namespace, store: ParameterStore, out: TextIO, err: TextIO) -> int:
    now = args.at
    _parse(args.rack, {}, now)
    stored = _read(store, args.rack)
    if stored.empty:
        raise stored.not_found()
    names = stored.names
    item = Item.SERVER if args.server else Item.CLIENT
    prefix = "server-" if args.server else ""
    wanted = {
        "ca.pem": names.cert(Item.CA),
        f"{prefix}cert.pem": names.cert(item),
        f"{prefix}key.pem": names.key(item),
    }
    missing = [name for name in wanted.values() if name not in stored.parameters]
    if missing:
        raise CliError(
            f"the bundle lacks {', '.join(missing)}: run a stack Update to repair it "
            "(docker-tls plan shows what it would do)"
        )
    values = stored.values
    try:
        ca = certificate_from_stored(values[names.cert(Item.CA)])
        cert = certificate_from_stored(values[names.cert(item)])
        key = private_key_from_stored(values[names.key(item)])
    except Unreadable as error:
        raise CliError(f"a stored value is unreadable ({error}): run a stack Update") from None
    if not same_key(cert, key):
        raise CliError(f"{names.key(item)} does not match {names.cert(item)}: run a stack Update")
    props, _ = _health_properties(stored, {}, now)
    health = plan(values, props, rotate=False, now=now)
    for item_plan in health:
        if item_plan.item in (Item.CA, item) and item_plan.decision is not Decision.REUSE:
            print(
                f"docker-tls: warning: {item_plan.item.value} is not healthy "
                f"({item_plan.reason}); the next Update would {item_plan.decision.value} it",
                file=err,
            )

    directory = args.dir.expanduser().absolute()
    targets = {filename: directory / filename for filename in wanted}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing and not args.force:
        raise CliError(f"{', '.join(existing)} already exist: pass --force to overwrite")
    if directory.exists() and not directory.is_dir():
        raise CliError(f"{directory} exists and is not a directory")
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
        directory.chmod(0o700)
    elif stat.S_IMODE(directory.stat().st_mode) & 0o077:
        mode = stat.S_IMODE(directory.stat().st_mode)
        print(
            f"docker-tls: note: {directory} is open to other users (mode {mode:04o}); "
            "the key file itself is 0600",
            file=err,
        )
    for filename, path in targets.items():
        value = values[wanted[filename]]
        is_key = filename.endswith("key.pem")
        _write_file(path, base64.b64decode(value.strip()), 0o600 if is_key else 0o644)
    print(
        f"docker-tls: wrote {', '.join(str(p) for p in targets.values())} "
        f"(key 0600); CA {fingerprint(ca)[:16]}…",
        file=err,
    )
    if args.server:
        flags = (
            f"dockerd --tlsverify --tlscacert={targets['ca.pem']} "
            f"--tlscert={targets['server-cert.pem']} --tlskey={targets['server-key.pem']} "
            f"-H=0.0.0.0:{args.port}"
        )
        print(flags, file=out)
        return EXIT_OK
    server = _stored_cert(values, names.cert(Item.SERVER))
    sans = list(subject_alt_names(server)) if server is not None else []
    host = args.host or next(iter(sans), "localhost")
    if sans and host not in sans:
        print(
            f"docker-tls: warning: {host} is not in the daemons' certificate "
            f"(valid for {', '.join(sans)}): docker will refuse the connection",
            file=err,
        )
    elif not args.host and len(sans) > 1:
        print(
            f"docker-tls: the daemons' certificate is valid for {', '.join(sans)}; "
            "--host picks another",
            file=err,
        )
    print(f"export DOCKER_HOST=tcp://{host}:{args.port}", file=out)
    print("export DOCKER_TLS_VERIFY=1", file=out)
    print(f"export DOCKER_CERT_PATH={directory}", file=out)
    return EXIT_OK


# --- Wiring ---------------------------------------------------------------------------------


def _moment(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time") from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docker-tls",
        description="Plan, inspect and export a rack's Docker TLS bundle in SSM Parameter "
        "Store. Uses the standard AWS credential chain and region; never writes to SSM.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--rack", required=True, help="the generator's Rack property")
        sub.add_argument(
            "--local",
            action="store_true",
            help="try it out: an embedded SSM endpoint holding a default bundle for --rack",
        )
        sub.add_argument(
            "--at",
            type=_moment,
            default=None,
            metavar="WHEN",
            help="judge expiry as of this ISO 8601 date/time instead of now",
        )
        return sub

    plan_cmd = command("plan", "what a Create/Update would do right now, per item; writes nothing")
    inspect_cmd = command("inspect", "stored certificates, parameter types and tiers, health")
    for sub in (plan_cmd, inspect_cmd):
        sub.add_argument(
            "--property",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a generator property as the template sends it (repeatable), e.g. "
            "KeyAlgorithm=ECDSA-P256 or ServerSubjectAltNames=localhost,10.0.0.5",
        )
        sub.add_argument("--json", action="store_true", help="machine-readable output")
    plan_cmd.add_argument(
        "--rotate", action="store_true", help="preview an Update that changes RotationToken"
    )
    export_cmd = command("export", "write PEM files for docker --tlsverify (or dockerd)")
    export_cmd.add_argument("--dir", type=Path, required=True, help="directory for the files")
    export_cmd.add_argument(
        "--server",
        action="store_true",
        help="export the daemons' server-cert.pem/server-key.pem instead of the client's",
    )
    export_cmd.add_argument("--force", action="store_true", help="overwrite existing files")
    export_cmd.add_argument(
        "--host", help="host for DOCKER_HOST (default: the server certificate's first SAN)"
    )
    export_cmd.add_argument("--port", type=int, default=DOCKER_TLS_PORT)
    return parser


_COMMANDS = {"plan": cmd_plan, "inspect": cmd_inspect, "export": cmd_export}


@contextmanager
def _local_store(rack: str, err: TextIO) -> Iterator[ParameterStore]:
    """An embedded SSM endpoint holding the bundle a Create with only ``Rack`` makes (so that
    ``plan --property …`` shows what changing a property would do)."""
    try:
        from devkit.ssm_server import local_ssm
    except ImportError as error:
        raise CliError(
            f"--local needs the development extras ({error.name} is missing): "
            "pip install -e '.[dev]'"
        ) from None
    from handler.ensure import ensure

    now = dt.datetime.now(dt.UTC)
    with local_ssm() as endpoint:
        endpoint.reset()  # moto keeps state per process
        store = ParameterStore()
        outcome = ensure(store, _parse(rack, {}, now), rotate=False, now=now)
        print(
            f"docker-tls: --local: embedded SSM at {endpoint.endpoint}, seeded Rack {rack!r} "
            f"with default properties ({outcome.action.value})",
            file=err,
        )
        yield store


def main(
    argv: Sequence[str] | None = None,
    *,
    client: SSMClient | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The ``docker-tls`` console script; ``client`` replaces the default SSM client."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.at is None:
        args.at = dt.datetime.now(dt.UTC)
    try:
        with ExitStack() as stack:
            if args.local:
                store = stack.enter_context(_local_store(args.rack, err))
            else:
                store = ParameterStore(client)
            return _COMMANDS[args.command](args, store, out, err)
    except CliError as error:
        print(f"docker-tls: {error}", file=err)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
