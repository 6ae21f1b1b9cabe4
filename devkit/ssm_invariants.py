"""What docker-tls may write to SSM at all: the bundle format as a checkable rule.

A pure function of one write (name, effective type, value) that lists what is wrong with it, for
the stand-ins to refuse (:mod:`devkit.ssm_rules` applies it in every test). The rules are those
of README.md's parameter table and docs/DESIGN.md:

* only a rack bundle's names: ``<lower-case hex of the rack>-docker-tls-<suffix>`` with one of
  the suffixes below; ``<hex>-version-track`` (the convox handler's) is only ever deleted;
* a private key is a ``SecureString``, whatever its name's role (live, next or previous CA key);
* a certificate or key value is standard, padded, one-line base64 of PEM text and of nothing
  else: certificate names hold one or more ``CERTIFICATE`` blocks, key names exactly one
  unencrypted private key block (PKCS#1, SEC1 or PKCS#8), each of which parses;
* ``-owner`` holds a JSON object ``{"StackId": ..., "LogicalResourceId": ...}`` (issue 17's
  ownership record): two non-empty strings, nothing more.

Messages name the parameter and the rule, never the value (it may be a private key).
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

KEY_SUFFIXES = ("ca-key", "server-key", "key", "next-ca-key", "previous-ca-key")
CERT_SUFFIXES = ("ca-cert", "server-cert", "cert", "previous-ca-cert")
OWNER_SUFFIX = "owner"
SUFFIXES = (*CERT_SUFFIXES, *KEY_SUFFIXES, OWNER_SUFFIX)

_NAME = re.compile(
    r"(?P<prefix>(?:[0-9a-f]{2})+)-docker-tls-(?P<suffix>" + "|".join(SUFFIXES) + ")"
)
_VERSION_TRACK = re.compile(r"(?:[0-9a-f]{2})+-version-track")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_PEM_BLOCK = re.compile(
    rb"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\n(?P<body>(?:[A-Za-z0-9+/=]{1,64}\n)+)"
    rb"-----END (?P=label)-----\n"
)
_KEY_LABELS = (b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"PRIVATE KEY")
_OWNER_FIELDS = {"StackId", "LogicalResourceId"}


def suffix_of(name: str) -> str | None:
    """The bundle suffix of ``name`` (``ca-key``, ``cert``, …), None for any other name."""
    match = _NAME.fullmatch(name)
    return match["suffix"] if match else None


def is_private_key(name: str) -> bool:
    return suffix_of(name) in KEY_SUFFIXES


def _pem_blocks(value: str) -> list[tuple[bytes, bytes]] | str:
    """The (label, whole block) pairs of a stored value, or what is wrong with its encoding."""
    if not _BASE64.fullmatch(value) or len(value) % 4:
        return "is not standard padded one-line base64"
    try:
        text = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "is not standard padded one-line base64"
    if base64.b64encode(text).decode("ascii") != value:
        return "is not canonical base64"
    blocks: list[tuple[bytes, bytes]] = []
    at = 0
    while at < len(text):
        match = _PEM_BLOCK.match(text, at)
        if match is None:
            return "decodes to something other than PEM blocks alone"
        blocks.append((match["label"], match.group(0)))
        at = match.end()
    return blocks or "decodes to no PEM block"


def _value_problem(suffix: str, value: str) -> str | None:
    if suffix == OWNER_SUFFIX:
        try:
            owner = json.loads(value)
        except ValueError:
            return "is not a JSON object"
        if not isinstance(owner, dict) or set(owner) != _OWNER_FIELDS:
            return "is not a JSON object of exactly StackId and LogicalResourceId"
        if not all(isinstance(v, str) and v for v in owner.values()):
            return "has an owner field that is not a non-empty string"
        return None
    blocks = _pem_blocks(value)
    if isinstance(blocks, str):
        return blocks
    if suffix in CERT_SUFFIXES:
        if any(label != b"CERTIFICATE" for label, _ in blocks):
            return "holds a PEM block that is not a CERTIFICATE"
        try:
            for _, block in blocks:
                x509.load_pem_x509_certificate(block)
        except ValueError:
            return "holds a CERTIFICATE block that does not parse"
        return None
    if len(blocks) != 1 or blocks[0][0] not in _KEY_LABELS:
        return "is not exactly one unencrypted private key PEM block"
    try:
        load_pem_private_key(blocks[0][1], password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError):
        return "holds a private key block that does not parse"
    return None


def write_problems(name: str, parameter_type: str | None, value: str | None) -> list[str]:
    """What is wrong with writing ``value`` as ``parameter_type`` to ``name`` (empty: nothing).
    ``parameter_type`` is the type the parameter will have (the stored one when the request
    names none); ``value`` is None only when moto is told to keep the stored one."""
    suffix = suffix_of(name)
    if suffix is None:
        what = "the convox handler's version-track" if _VERSION_TRACK.fullmatch(name) else "it"
        return [f"{name}: not a rack bundle's parameter ({what} is never written)"]
    problems = []
    if suffix in KEY_SUFFIXES and parameter_type != "SecureString":
        problems.append(f"{name}: a private key written as {parameter_type}, not SecureString")
    if value is not None:
        problem = _value_problem(suffix, value)
        if problem:
            problems.append(f"{name}: the value {problem}")
    return problems


def delete_problems(name: str) -> list[str]:
    """A delete may remove a bundle's parameter or the old handler's version-track, no other."""
    if suffix_of(name) is None and not _VERSION_TRACK.fullmatch(name):
        return [f"{name}: deleting a parameter that is not a rack bundle's"]
    return []
