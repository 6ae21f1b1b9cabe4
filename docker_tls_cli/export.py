"""``docker-tls export``: the client's (or ``--server``) credentials as PEM files for
``docker --tlsverify`` (or ``dockerd``); key files are written 0600 and printed nowhere."""

from __future__ import annotations

import argparse
import base64
import os
import stat
import tempfile
from pathlib import Path
from typing import TextIO

from docker_tls_cli.common import (
    EXIT_OK,
    CliError,
    health_properties,
    parse_properties,
    read_bundle,
    stored_cert,
)
from handler.bundle import Decision, Item, plan
from handler.certificates import (
    Unreadable,
    certificate_from_stored,
    fingerprint,
    private_key_from_stored,
    same_key,
    subject_alt_names,
)
from handler.store import ParameterStore

DOCKER_TLS_PORT = 2376


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
    parse_properties(args.rack, {}, now)
    stored = read_bundle(store, args.rack)
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
    props, _ = health_properties(stored, {}, now)
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
    server = stored_cert(values, names.cert(Item.SERVER))
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
