"""A rack's trust as SSM holds it now: which CA signs, which others ``ca-cert`` trusts and why
(introduced, or the one that signed before a switch), and the retired one. ``plan`` words its
before/after from this; ``verify`` judges held files against it. Read only, no key printed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from docker_tls_cli.lambda_code import (
    RotationStage,
    StoredBundle,
    StoredKey,
    fingerprint,
    public_key_der,
    same_key,
    signed_by,
)


def label(cert: x509.Certificate) -> str:
    """How an operator tells two CAs apart: subject and the start of the SHA-256."""
    return f"{cert.subject.rfc4514_string()} (SHA-256 {fingerprint(cert)[:16]}…)"


def same_ca(a: x509.Certificate, b: x509.Certificate) -> bool:
    """One CA: the same key (a renewed certificate of one key is the same CA to a verifier)."""
    return public_key_der(a) == public_key_der(b)


def holds(certs: Iterable[x509.Certificate], cert: x509.Certificate) -> bool:
    return any(same_ca(c, cert) for c in certs)


def issuer_among(
    leaf: x509.Certificate, cas: Iterable[x509.Certificate]
) -> x509.Certificate | None:
    """The CA in ``cas`` whose signature ``leaf`` carries, if any."""
    return next((ca for ca in cas if signed_by(leaf, ca)), None)


@dataclass(frozen=True)
class RackTrust:
    """The CAs of a rack's stored bundle, by role."""

    stage: RotationStage | None
    trusted: tuple[x509.Certificate, ...]  # ca-cert, in order
    signer: x509.Certificate | None  # the certificate in ca-cert of ca-key
    introduced: x509.Certificate | None  # of next-ca-key: trusted, does not sign yet
    previous: x509.Certificate | None  # of previous-ca-key: signed before the switch
    retired: x509.Certificate | None  # previous-ca-cert: trusted no more

    @classmethod
    def read(cls, bundle: StoredBundle) -> RackTrust:
        """The roles in ``bundle``, decoded once as the Lambda's rules read it (an unreadable
        value holds no CA here)."""
        trusted, retired = bundle.ca_bundle, bundle.retired

        def of(stored: StoredKey | None) -> x509.Certificate | None:
            return next((c for c in trusted if stored and same_key(c, stored.key)), None)

        signer = of(bundle.signer)
        previous = of(bundle.previous_ca_key)
        # A retire rolled back: the old CA is trusted again from its kept certificate.
        if previous is None and retired is not None and holds(trusted, retired):
            others = [c for c in trusted if same_ca(c, retired)]
            previous = None if signer is not None and same_ca(signer, retired) else others[0]
        return cls(bundle.stage, trusted, signer, of(bundle.next_ca_key), previous, retired)

    def role(self, cert: x509.Certificate) -> str:
        """What ``cert`` (a CA) is to this rack, in words."""
        if self.signer is not None and same_ca(cert, self.signer):
            return "the signing CA"
        if self.introduced is not None and same_ca(cert, self.introduced):
            return "the introduced CA"
        if self.previous is not None and same_ca(cert, self.previous):
            return "the CA that signed before the switch"
        if holds(self.trusted, cert):
            return "a CA the rack still trusts"
        if self.retired is not None and same_ca(cert, self.retired):
            return "the retired CA"
        return "a CA this rack does not trust"
