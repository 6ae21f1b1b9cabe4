"""``docker-tls verify``: are the files someone holds (an exported directory, or a daemon's
``/etc/ca.pem`` and server certificate) current for the rack's stage, and if not, what to
refresh and before which step. During a staged CA rotation (docs/OPERATIONS.md, "Replacing
the CA in stages") every holder must refresh between stages; this says who has not.

Reads SSM (one ``GetParameters``) and the files; writes nothing anywhere. A key file is only
compared with its certificate (same public key), never printed. Exit 0: current; 6: something
to refresh (each line says what); the usual codes otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cryptography import x509

from docker_tls_cli.common import EXIT_OK, EXIT_USAGE, CliError, parse_properties, read_bundle
from docker_tls_cli.lambda_code import (
    Item,
    ParameterStore,
    PrivateKey,
    Purpose,
    RotationStage,
    Unreadable,
    certificate_from_stored,
    extended_key_usages,
    fingerprint,
    same_key,
    subject_alt_names,
)
from docker_tls_cli.trust import RackTrust, holds, issuer_among, label, same_ca

#: Something the holder must refresh (distinct from failures: a script can tell them apart).
EXIT_REFRESH = 7


@dataclass(frozen=True)
class Finding:
    """One file's verdict."""

    file: str
    current: bool
    text: str


def _read_certificates(path: Path) -> tuple[x509.Certificate, ...]:
    try:
        return tuple(x509.load_pem_x509_certificates(path.read_bytes()))
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None
    except ValueError:
        raise CliError(f"{path} is not PEM certificates") from None


def _read_key(path: Path) -> PrivateKey | None:
    """The private key in ``path``; None when it is not one this project issues."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else None


def stage_name(trust: RackTrust) -> str:
    if trust.stage is RotationStage.INTRODUCE:
        return "introduce (a new CA is trusted, the old one signs)"
    if trust.stage is RotationStage.SWITCH:
        return "switch (the new CA signs, both are trusted)"
    if trust.retired is not None:
        return "steady, after a retire (only the new CA is trusted)"
    return "steady (no CA rotation in progress)"


def check_ca(name: str, held: Sequence[x509.Certificate], trust: RackTrust) -> list[Finding]:
    """A held trust bundle against the rack's ``ca-cert``."""
    found: list[Finding] = []
    for ca in trust.trusted:
        if holds(held, ca):
            continue
        if trust.signer is not None and same_ca(ca, trust.signer):
            text = (
                f"{name} lacks the signing CA {label(ca)}: re-export now (it refuses every "
                "daemon that CA signed)"
            )
        elif trust.introduced is not None and same_ca(ca, trust.introduced):
            text = f"{name} lacks the introduced CA {label(ca)}: re-export before the switch"
        elif trust.previous is not None and same_ca(ca, trust.previous):
            text = (
                f"{name} lacks {label(ca)}, the CA that signed before the switch (daemons not "
                "yet replaced still use it): re-export"
            )
        else:
            text = f"{name} lacks {label(ca)}, which the rack trusts: re-export"
        found.append(Finding(name, False, text))
    for ca in held:
        if holds(trust.trusted, ca):
            continue
        if trust.retired is not None and same_ca(ca, trust.retired):
            text = (
                f"{name} still trusts the retired CA {label(ca)}: re-export to drop it "
                "(certificates it signed would still be accepted)"
            )
        else:
            text = (
                f"{name} trusts {label(ca)}, a CA this rack does not trust (another rack's, or "
                "an earlier CA's): re-export"
            )
        found.append(Finding(name, False, text))
    if not found:
        signer = label(trust.signer) if trust.signer else "?"
        others = len(trust.trusted) - 1
        also = f" and {others} other CA{'s' if others > 1 else ''}" if others else ""
        found.append(Finding(name, True, f"{name} is current: trusts {signer}{also}, as ca-cert"))
    return found


def check_leaf(
    name: str,
    key_name: str,
    cert: x509.Certificate,
    key: PrivateKey | bool | None,
    stored: x509.Certificate | None,
    trust: RackTrust,
    now: dt.datetime,
) -> list[Finding]:
    """A held certificate (and its key: False when not given) against who signs now and who is
    trusted."""
    if key is None:
        return [Finding(key_name, False, f"{key_name} is not a readable RSA or EC key: re-export")]
    if not isinstance(key, bool) and not same_key(cert, key):
        return [Finding(key_name, False, f"{key_name} does not match {name}: re-export")]
    known = (*trust.trusted, *((trust.retired,) if trust.retired else ()))
    issuer = issuer_among(cert, known)
    if issuer is None:
        return [Finding(name, False, f"{name} is signed by no CA this rack knows: re-export")]
    if cert.not_valid_after_utc <= now:
        return [Finding(name, False, f"{name} expired {cert.not_valid_after_utc:%Y-%m-%d}")]
    if not holds(trust.trusted, issuer):
        text = f"{name} is signed by the retired CA {label(issuer)}: re-export"
        return [Finding(name, False, text)]
    if trust.signer is None or not same_ca(issuer, trust.signer):
        role = trust.role(issuer)
        step = "the retire" if role == "the CA that signed before the switch" else "a cancel"
        text = (
            f"{name} is signed by {role} {label(issuer)}, which signs no more: re-export "
            f"before {step} (daemons refuse it after)"
        )
        return [Finding(name, False, text)]
    server = extended_key_usages(cert)
    if stored is not None and server is not None and Purpose.SERVER.value in server:
        held_names, stored_names = set(subject_alt_names(cert)), set(subject_alt_names(stored))
        if held_names != stored_names:
            text = (
                f"{name} names {', '.join(sorted(held_names))}, the rack's server certificate "
                f"{', '.join(sorted(stored_names))}: re-export"
            )
            return [Finding(name, False, text)]
    same = stored is not None and fingerprint(stored) == fingerprint(cert)
    note = "" if same else " (an earlier certificate than the stored one; still accepted)"
    return [Finding(name, True, f"{name} is current: signed by the signing CA{note}")]


def _files(args: argparse.Namespace) -> tuple[Path, list[tuple[Item, Path, Path | None]]]:
    """ca.pem and the certificate/key pairs to check."""
    directory: Path | None = args.dir.expanduser() if args.dir else None
    if directory is None and args.ca is None:
        raise CliError("pass --dir (an exported directory) or --ca (and --cert, --key)", EXIT_USAGE)
    if args.key is not None and args.cert is None:
        raise CliError("--key goes with --cert", EXIT_USAGE)
    ca: Path = args.ca if args.ca is not None else directory / "ca.pem"  # type: ignore[operator]
    pairs: list[tuple[Item, Path, Path | None]] = []
    if args.cert is not None:
        pairs.append((Item.SERVER if args.server else Item.CLIENT, args.cert, args.key))
    elif directory is not None:
        for item, prefix in ((Item.CLIENT, ""), (Item.SERVER, "server-")):
            cert = directory / f"{prefix}cert.pem"
            if cert.exists():
                pairs.append((item, cert, directory / f"{prefix}key.pem"))
    return ca, pairs


def cmd_verify(args: argparse.Namespace, store: ParameterStore, out: TextIO, err: TextIO) -> int:
    now = args.at
    parse_properties(args.rack, {}, now)
    ca_path, pairs = _files(args)
    stored = read_bundle(store, args.rack)
    if stored.empty:
        raise stored.not_found()
    trust = RackTrust.read(stored.bundle)
    print(f"Rack {args.rack!r} is at stage {stage_name(trust)}", file=out)
    findings = check_ca(ca_path.name, _read_certificates(ca_path), trust)
    for item, cert_path, key_path in pairs:
        certs = _read_certificates(cert_path)
        stored_leaf: x509.Certificate | None = None
        try:
            stored_leaf = certificate_from_stored(stored.values[stored.names.cert(item)])
        except (KeyError, Unreadable):
            stored_leaf = None
        findings += check_leaf(
            cert_path.name,
            key_path.name if key_path else "",
            certs[0],
            _read_key(key_path) if key_path else False,
            stored_leaf,
            trust,
            now,
        )
    for finding in findings:
        print(f"  {'ok' if finding.current else 'REFRESH'}: {finding.text}", file=out)
    if all(finding.current for finding in findings):
        print("current: nothing to refresh", file=out)
        return EXIT_OK
    where = f" --dir {args.dir}" if args.dir else " --dir DIR"
    server = " --server" if any(item is Item.SERVER for item, _, _ in pairs) else ""
    print(
        f"refresh: docker-tls export --rack {args.rack}{where}{server} --force "
        "(a daemon gets its new files when its instance is replaced)",
        file=out,
    )
    return EXIT_REFRESH
