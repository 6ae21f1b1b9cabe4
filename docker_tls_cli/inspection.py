"""``docker-tls inspect``: stored certificates, parameter types and tiers, and each item's
health; no key material is printed."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from docker_tls_cli.common import (
    EXIT_OK,
    Stored,
    as_store_error,
    health_properties,
    parse_properties,
    property_pairs,
    read_bundle,
    when,
)
from docker_tls_cli.lambda_code import (
    Decision,
    Item,
    KeyAlgorithm,
    ParameterStore,
    Plan,
    PrivateKey,
    Purpose,
    Resource,
    Unreadable,
    certificate_from_stored,
    certificates_from_stored,
    extended_key_usages,
    fingerprint,
    plan,
    private_key_from_stored,
    public_key_der,
    same_key,
    subject_alt_names,
)

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

_DESCRIBE_PAGES = 10
_EKU_NAMES = {purpose.value: purpose.eku_name for purpose in Purpose}


def describe(client: SSMClient, names: Sequence[str]) -> tuple[dict[str, dict[str, Any]], str]:
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
        failure = as_store_error("DescribeParameters", error)
        return {}, f"tier unknown: {failure} (needs ssm:DescribeParameters)"
    return found, ""


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
        "not_before": when(cert.not_valid_before_utc),
        "not_after": when(cert.not_valid_after_utc),
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
        last_modified=when(modified.astimezone(dt.UTC))
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
        key: PrivateKey | None = None
        if key_facts["present"]:
            try:
                key = private_key_from_stored(stored.parameters[names.key(item)].value)
            except Unreadable as error:
                key_facts["problem"] = f"unreadable ({error})"
        if cert_facts["present"]:
            try:
                # ca-cert is a trust bundle: one CA, or two during a staged rotation.
                read = (
                    certificates_from_stored
                    if item is Item.CA
                    else lambda value: (certificate_from_stored(value),)
                )
                certs = read(stored.parameters[names.cert(item)].value)
            except Unreadable as error:
                cert_facts["problem"] = f"unreadable ({error})"
            else:
                cert = next((c for c in certs if key and same_key(c, key)), certs[0])
                cert_facts["certificate"] = certificate_facts(cert)
                others = [c for c in certs if c is not cert]
                if others:
                    cert_facts["also_trusted"] = [certificate_facts(c) for c in others]
        if key is not None:
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
        "owner": _owner(stored),
        "items": items,
        "rotation": _rotation_facts(stored, described),
    }


def _owner(stored: Stored) -> str:
    """Whose Delete removes the bundle (handler.ownership), as an operator knows it."""
    recorded = stored.parameters.get(stored.names.owner)
    if recorded is None:
        return "none recorded (its own stack's next Update adopts it; no Delete removes it)"
    owner = Resource.from_stored(recorded.value)
    return owner.describe() if owner is not None else "unreadable owner record"


def _rotation_facts(
    stored: Stored, described: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """A staged rotation's extra parameters that are stored: what each holds, no key material."""
    found: list[dict[str, Any]] = []
    for name in stored.names.rotation:
        facts = _parameter_facts(name, stored, described)
        if not facts["present"]:
            continue
        value = stored.parameters[name].value
        try:
            if name == stored.names.previous_ca_cert:
                facts["certificate"] = certificate_facts(certificate_from_stored(value))
            else:
                key = private_key_from_stored(value)
                algorithm = KeyAlgorithm.of(key)
                facts["key"] = {
                    "algorithm": algorithm.value if algorithm else type(key).__name__,
                    "public_key_sha256": hashlib.sha256(public_key_der(key)).hexdigest(),
                }
        except Unreadable as error:
            facts["problem"] = f"unreadable ({error})"
        found.append(facts)
    return found


def _render_certificate(facts: Mapping[str, Any], out: TextIO, indent: str = "    ") -> None:
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
        print(f"{indent}{label:<11} {value}", file=out)


def _render_inspect(report: Mapping[str, Any], note: str, out: TextIO) -> None:
    region = f" in {report['region']}" if report["region"] else ""
    print(f"Rack {report['rack']!r} (prefix {report['prefix']}){region}", file=out)
    against = ", ".join(f"{k}={v}" for k, v in report["health_judged_against"].items())
    print(f"health judged against {against}", file=out)
    print(f"owner (the one resource whose Delete removes it): {report['owner']}", file=out)
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
                if "also_trusted" in parameter:
                    print("    signs:", file=out)
                _render_certificate(parameter["certificate"], out)
                for other in parameter.get("also_trusted", []):
                    print("    also trusted (does not sign):", file=out)
                    _render_certificate(other, out)
            if "key" in parameter:
                key = parameter["key"]
                match = {True: "matches", False: "DOES NOT match", None: "no certificate to match"}
                print(
                    f"    {'key':<11} {key['algorithm']}, {match[key['matches_certificate']]} "
                    "the certificate",
                    file=out,
                )
    if report["rotation"]:
        print("\nstaged CA rotation:", file=out)
        for parameter in report["rotation"]:
            print(f"  {parameter['name']}  {parameter['type']}", file=out)
            if "problem" in parameter:
                print(f"    {parameter['problem']}", file=out)
            if "certificate" in parameter:
                _render_certificate(parameter["certificate"], out)
            if "key" in parameter:
                key = parameter["key"]
                print(
                    f"    {'key':<11} {key['algorithm']}, public key SHA-256 "
                    f"{key['public_key_sha256'][:16]}…",
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
    given = property_pairs(args.property)
    parse_properties(args.rack, given, now)  # a bad --property is refused before anything is read
    stored = read_bundle(store, args.rack)
    if stored.empty:
        raise stored.not_found()
    props, against = health_properties(stored, given, now)
    health = plan(stored.bundle, props, rotate=False, now=now)
    described, note = describe(store.client, stored.names.everything)
    report = inspect_report(stored, described, health, against)
    if args.json:
        print(json.dumps({**report, "note": note or None}, indent=2), file=out)
    else:
        _render_inspect(report, note, out)
    return EXIT_OK
