"""The stored bundle, read once: every value SSM holds for a rack, decoded into one typed value.

:meth:`StoredBundle.decode` is the only place a stored value becomes a certificate or a key;
the decision rules (:mod:`handler.rotation`, :mod:`handler.bundle`) and the operator's tools
read the result. A value that does not decode is kept as a *problem* (why it is missing), never
as "nothing stored": the rules repair it, and only an absent parameter counts as absent.

The rotation stage the bundle is in (docs/DESIGN.md §4) is derived here too, from which keys
decode: one derivation for the stale-event check, the stage rules and the operator's ``plan``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509

from .codec import (
    PrivateKey,
    Unreadable,
    certificate_from_stored,
    certificates_from_stored,
    private_key_from_stored,
    single_certificate,
)
from .model import RotationStage
from .names import BundleNames, Item

_T = TypeVar("_T")


@dataclass(frozen=True)
class StoredKey:
    """A private key as stored: its value (moved byte for byte) and the key it decodes to."""

    value: str
    key: PrivateKey


@dataclass(frozen=True)
class StoredPair:
    """One item's certificate and key as read, each with why it is missing when it is."""

    cert: x509.Certificate | None
    key: PrivateKey | None
    cert_problem: str | None = None  # why ``cert`` is None
    key_problem: str | None = None  # why ``key`` is None

    @property
    def problem(self) -> str | None:
        return "; ".join(p for p in (self.cert_problem, self.key_problem) if p) or None


@dataclass(frozen=True)
class StoredBundle:
    """What SSM holds for one rack, decoded (the owner record is not part of it)."""

    names: BundleNames
    values: Mapping[str, str]  # name -> value, as read: what a key move copies byte for byte
    ca: StoredPair  # ``ca-key`` and ``ca-cert`` read as one CA's certificate and key
    server: StoredPair
    client: StoredPair
    #: ``ca-cert``'s certificates in order (empty when it is missing or unreadable).
    ca_bundle: tuple[x509.Certificate, ...]
    signer: StoredKey | None  # ``ca-key``, when it decodes
    next_ca_key: StoredKey | None  # a staged rotation's introduced CA key
    previous_ca_key: StoredKey | None  # the switched-from CA's key
    retired: x509.Certificate | None  # ``previous-ca-cert``: a retired CA's certificate

    @classmethod
    def decode(cls, values: Mapping[str, str], names: BundleNames) -> StoredBundle:
        """Decode each value of ``values`` (name -> value) once."""
        ca_value = values.get(names.cert(Item.CA))
        # Nothing stored trusts nothing; the CA pair says "not stored" itself (_decode).
        bundle_read = _bundle(ca_value) if ca_value is not None else ()
        # The CA's own certificate is judged from the same read as the trust set it heads.
        ca_cert, ca_cert_problem = _decode(ca_value, lambda _: single_certificate(bundle_read))
        signer, ca_key_problem = _key(values, names.key(Item.CA))
        retired, _ = _decode(values.get(names.previous_ca_cert), certificate_from_stored)
        return cls(
            names,
            values,
            StoredPair(
                ca_cert,
                signer.key if signer else None,
                ca_cert_problem and f"certificate {ca_cert_problem}",
                ca_key_problem and f"key {ca_key_problem}",
            ),
            _pair(values, names, Item.SERVER),
            _pair(values, names, Item.CLIENT),
            bundle_read if isinstance(bundle_read, tuple) else (),
            signer,
            _key(values, names.next_ca_key)[0],
            _key(values, names.previous_ca_key)[0],
            retired,
        )

    @property
    def leaves(self) -> dict[Item, StoredPair]:
        return {Item.SERVER: self.server, Item.CLIENT: self.client}

    @property
    def nothing_stored(self) -> bool:
        """No certificate or key parameter at all: a new bundle, not a broken one."""
        return not any(name in self.values for name in self.names.material)

    @property
    def extras(self) -> tuple[str, ...]:
        """The staged rotation's parameters that are stored, readable or not."""
        return tuple(name for name in self.names.rotation if name in self.values)

    @property
    def holds_version_track(self) -> bool:
        """The convox handler's ``version-track`` is among the values read."""
        return self.names.version_track in self.values

    @property
    def stage(self) -> RotationStage | None:
        """The RotationStage the bundle is in, as a stack that is not mid-update sends it:
        introduce while a CA is introduced, switch while both are trusted after a switch. Only
        keys that decode count, beside a signing key that decodes: anything less is no rotation
        in progress (the ordinary rules repair it, or rotate at once)."""
        if self.next_ca_key and self.previous_ca_key:
            return RotationStage.INTRODUCE  # a switch, or its rollback, interrupted
        if self.signer is None:
            return None
        if self.next_ca_key:
            return RotationStage.INTRODUCE
        if self.previous_ca_key:
            return RotationStage.SWITCH
        if self.names.previous_ca_cert in self.values and len(self.ca_bundle) > 1:
            return RotationStage.SWITCH  # a retire rolled back
        return None


def _decode(value: str | None, decoder: Callable[[str], _T]) -> tuple[_T | None, str | None]:
    if value is None:
        return None, "not stored"
    try:
        return decoder(value), None
    except Unreadable as error:
        return None, f"unreadable ({error})"


def _bundle(value: str) -> tuple[x509.Certificate, ...] | Unreadable:
    try:
        return certificates_from_stored(value)
    except Unreadable as error:
        return error


def _key(values: Mapping[str, str], name: str) -> tuple[StoredKey | None, str | None]:
    """The key stored under ``name``, or why there is none."""
    value = values.get(name)
    key, problem = _decode(value, private_key_from_stored)
    if value is None or key is None:
        return None, problem
    return StoredKey(value, key), None


def _pair(values: Mapping[str, str], names: BundleNames, item: Item) -> StoredPair:
    cert, cert_problem = _decode(values.get(names.cert(item)), certificate_from_stored)
    key, key_problem = _decode(values.get(names.key(item)), private_key_from_stored)
    return StoredPair(
        cert,
        key,
        cert_problem and f"certificate {cert_problem}",
        key_problem and f"key {key_problem}",
    )
