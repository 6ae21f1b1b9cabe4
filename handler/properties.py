"""Resource properties: CloudFormation's strings turned into checked, typed values.

CloudFormation sends every scalar as a string (``"36500"``, ``"true"``), lists keep their shape.
Each check raises :class:`PropertyError` naming the property, so a bad template fails with a
reason the operator can act on, before anything is read or written.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from .certificates import KeyAlgorithm, max_validity_days
from .model import (
    DEFAULT_KEY_ALGORITHM,
    DEFAULT_RENEW_BEFORE_DAYS,
    DEFAULT_SERVER_SANS,
    DEFAULT_VALIDITY_DAYS,
    GeneratorProperties,
    GetterProperties,
    RotationStage,
)

#: Properties CloudFormation or the old rack template add to every custom resource.
ALWAYS_ALLOWED = frozenset({"ServiceToken", "ServiceTimeout", "Description"})

#: A stack name is at most 128 characters; the hex prefix doubles it and must leave room in
#: parameter names and in CloudFormation's 4096-byte response.
MAX_RACK_BYTES = 128
MAX_SANS = 100
MAX_TOKEN_CHARS = 256

_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DIGITS = re.compile(r"^[0-9]{1,7}$")
_KMS_KEY_ID = re.compile(r"^[A-Za-z0-9:/_\-]{1,2048}$")


class PropertyError(ValueError):
    """A property the resource cannot accept; the message starts with the property's name."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name = name


def _refuse_unknown(properties: Mapping[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(properties) - known - ALWAYS_ALLOWED)
    if unknown:
        allowed = ", ".join(sorted(known))
        # Names are echoed cut short: the Reason has 240 characters, and a long run would be
        # redacted as if it were key material.
        raise PropertyError(
            ", ".join(name if len(name) <= 40 else name[:40] + "..." for name in unknown),
            f"{'is' if len(unknown) == 1 else 'are'} not a property of "
            f"this resource (allowed: {allowed})",
        )


def parse_rack(properties: Mapping[str, Any]) -> str:
    """The required ``Rack``: names the bundle; its hex is the parameter prefix."""
    rack = properties.get("Rack")
    if rack is None:
        raise PropertyError("Rack", "is required: set it to the fleet's name, e.g. the stack name")
    if not isinstance(rack, str):
        raise PropertyError("Rack", f"must be a string, got {type(rack).__name__}")
    if not rack.strip():
        raise PropertyError("Rack", "must not be empty")
    if rack != rack.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in rack):
        raise PropertyError("Rack", "must not have surrounding spaces or control characters")
    if len(rack.encode("utf-8")) > MAX_RACK_BYTES:
        raise PropertyError("Rack", f"must be at most {MAX_RACK_BYTES} bytes of UTF-8")
    return rack


def _days(properties: Mapping[str, Any], name: str, default: int) -> int:
    value = properties.get(name)
    if value is None:
        return default
    # CloudFormation sends strings; a template tool may pass a real int. Never a bool or float.
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _DIGITS.match(text):
        raise PropertyError(name, f"must be a whole number of days, got {value!r}")
    days = int(text)
    if days < 1:
        raise PropertyError(name, "must be at least 1")
    return days


def _key_algorithm(properties: Mapping[str, Any]) -> KeyAlgorithm:
    value = properties.get("KeyAlgorithm")
    if value is None:
        return DEFAULT_KEY_ALGORITHM
    choices = ", ".join(a.value for a in KeyAlgorithm)
    if isinstance(value, str):
        for algorithm in KeyAlgorithm:
            if algorithm.value.lower() == value.strip().lower():
                return algorithm
    raise PropertyError("KeyAlgorithm", f"must be one of {choices}, got {value!r}")


#: Multi-label public suffixes a wildcard must not sit directly on. Not the whole Public Suffix
#: List (single-label top-level domains are refused by counting labels): the registries and
#: shared hosting domains a template is most likely to name, where one certificate would
#: claim every tenant's names.
PUBLIC_SUFFIXES = frozenset(
    {
        "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "com.au", "net.au", "org.au", "co.nz",
        "co.jp", "ne.jp", "or.jp", "com.br", "com.cn", "com.hk", "com.sg", "com.tw", "co.in",
        "co.kr", "co.za", "com.mx", "com.ar", "com.tr", "co.il", "com.my",
        "amazonaws.com", "compute.amazonaws.com", "elb.amazonaws.com", "s3.amazonaws.com",
        "cloudfront.net", "azurewebsites.net", "cloudapp.net", "appspot.com", "herokuapp.com",
        "github.io", "vercel.app", "netlify.app", "pages.dev", "workers.dev",
    }
)  # fmt: skip


def normalize_host(entry: str) -> str:
    """A SAN entry as it will appear in the certificate, or ValueError completing the sentence
    "ServerSubjectAltNames entry '…' is …"."""
    text = entry.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text.lower().rstrip(".")
    labels = name.split(".")
    wildcard = labels[0] == "*"
    if wildcard:
        labels = labels[1:]
    if "*" in ".".join(labels):
        raise ValueError(
            "a wildcard that is not the whole leftmost label: clients match only '*.' "
            "followed by a name, e.g. '*.ec2.internal'"
        )
    if wildcard and not labels:
        raise ValueError(
            "a wildcard for every name: name the fleet's domain, e.g. '*.ec2.internal'"
        )
    if len(name) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ValueError("neither an IP address nor a DNS name")
    if labels[-1].isdigit():
        # No top-level domain is numeric: "300.1.1.1" or "10.0.0" is a mistyped IP address,
        # which clients would dial as an IP and never match against a DNS entry.
        raise ValueError("neither an IP address nor a DNS name (a mistyped IP address?)")
    if wildcard and len(labels) < 2:
        raise ValueError(
            f"a wildcard on a top-level domain ({labels[0]}): it would cover every name "
            "under it; a wildcard needs at least two labels after '*.'"
        )
    if wildcard and ".".join(labels) in PUBLIC_SUFFIXES:
        raise ValueError(
            f"a wildcard on a public suffix ({'.'.join(labels)}): it would cover every "
            "domain registered under it"
        )
    return name


def _server_sans(properties: Mapping[str, Any]) -> tuple[str, ...]:
    name = "ServerSubjectAltNames"
    value = properties.get(name)
    if value is None:
        return DEFAULT_SERVER_SANS
    if isinstance(value, str):
        entries: list[Any] = value.split(",")
    elif isinstance(value, list):
        entries = value
    else:
        raise PropertyError(name, "must be a list or a comma-separated string")
    names: list[str] = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, str):
            raise PropertyError(name, f"entries must be strings, got {entry!r}")
        if not entry.strip():
            raise PropertyError(
                name, f"entry {number} is empty (two commas in a row, or one at an end)"
            )
        try:
            host = normalize_host(entry)
        except ValueError as error:
            raise PropertyError(name, f"entry {entry.strip()[:80]!r} is {error}") from None
        if host not in names:
            names.append(host)
    if not names:
        raise PropertyError(name, "must name at least one DNS name or IP address")
    if len(names) > MAX_SANS:
        raise PropertyError(name, f"may hold at most {MAX_SANS} entries")
    return tuple(names)


def _optional_text(
    properties: Mapping[str, Any], name: str, pattern: re.Pattern[str]
) -> str | None:
    value = properties.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise PropertyError(name, f"is not valid: {str(value)[:60]!r}")
    return value


def parse_generator(properties: Mapping[str, Any], now: dt.datetime) -> GeneratorProperties:
    """Check and convert a generator's ``ResourceProperties``."""
    _refuse_unknown(
        properties,
        frozenset(
            {
                "Rack",
                "Version",
                "KeyAlgorithm",
                "ValidityDays",
                "RenewBeforeDays",
                "ServerSubjectAltNames",
                "KmsKeyId",
                "RotationToken",
                "RotationStage",
            }
        ),
    )
    rack = parse_rack(properties)
    validity = _days(properties, "ValidityDays", DEFAULT_VALIDITY_DAYS)
    if validity > max_validity_days(now):
        raise PropertyError(
            "ValidityDays", f"would end certificates after year 9999 (max {max_validity_days(now)})"
        )
    renew_before = _days(properties, "RenewBeforeDays", DEFAULT_RENEW_BEFORE_DAYS)
    if renew_before >= validity:
        raise PropertyError(
            "RenewBeforeDays", f"({renew_before}) must be less than ValidityDays ({validity})"
        )
    token = properties.get("RotationToken")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS):
        raise PropertyError(
            "RotationToken", f"must be a string of at most {MAX_TOKEN_CHARS} characters"
        )
    return GeneratorProperties(
        rack=rack,
        key_algorithm=_key_algorithm(properties),
        validity_days=validity,
        renew_before_days=renew_before,
        server_subject_alt_names=_server_sans(properties),
        kms_key_id=_optional_text(properties, "KmsKeyId", _KMS_KEY_ID),
        rotation_token=token or None,
        rotation_stage=_rotation_stage(properties),
    )


def parse_stage(value: object) -> RotationStage | None:
    """A stage from a property value: None for absent or empty; ValueError for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        for stage_ in RotationStage:
            if value.strip().lower() == stage_.value:
                return stage_
    raise ValueError(value)


def _rotation_stage(properties: Mapping[str, Any]) -> RotationStage | None:
    value = properties.get("RotationStage")
    try:
        return parse_stage(value)
    except ValueError:
        raise PropertyError(
            "RotationStage",
            f"must be introduce or switch, or empty for none, got {str(value)[:40]!r}",
        ) from None


def previous_rotation_stage(old: Mapping[str, Any] | None) -> RotationStage | None:
    """The stage an Update's OldResourceProperties asked for; None when absent or unreadable
    (those were accepted once, or the stack would not have them)."""
    if not isinstance(old, Mapping):
        return None
    try:
        return parse_stage(old.get("RotationStage"))
    except ValueError:
        return None


def rotation_requested(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether an Update changed ``RotationToken``: the one way to rotate a healthy CA."""
    if old is None:
        return False
    return (new.get("RotationToken") or None) != (old.get("RotationToken") or None)


def parse_getter(properties: Mapping[str, Any]) -> GetterProperties:
    """Check and convert a getter's ``ResourceProperties``."""
    _refuse_unknown(properties, frozenset({"Rack", "ParameterKey", "Version"}))
    rack = parse_rack(properties)
    key = properties.get("ParameterKey")
    if not isinstance(key, str) or not key:
        raise PropertyError("ParameterKey", "is required: use a name the generator returned")
    return GetterProperties(rack=rack, parameter_key=key)
