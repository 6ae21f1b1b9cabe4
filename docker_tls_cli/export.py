"""``docker-tls export``: the client's (or ``--server``) credentials as PEM files for
``docker --tlsverify`` (or ``dockerd``); key files are written 0600 and printed nowhere."""

from __future__ import annotations

import argparse
import base64
import ipaddress
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TextIO

from cryptography import x509

from docker_tls_cli.common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    health_properties,
    parse_properties,
    read_bundle,
    stored_cert,
)
from docker_tls_cli.lambda_code import (
    BundleNames,
    Decision,
    Item,
    ParameterStore,
    Unreadable,
    certificate_from_stored,
    certificates_from_stored,
    fingerprint,
    plan,
    private_key_from_stored,
    same_key,
    signed_by,
    subject_alt_names,
)

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


def _is_this_machine(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost" or name.endswith(".localhost")


def named_by(host: str, names: Sequence[str]) -> bool:
    """Whether a certificate with these SANs is valid for ``host``: an exact name or address,
    or a wildcard standing for exactly the leftmost label (as Go, OpenSSL and Python match)."""
    host = host.lower().rstrip(".")
    with suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    for name in names:
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def _docker_host(
    given: str | None, values: Mapping[str, str], names: BundleNames, err: TextIO
) -> str:
    """The host for DOCKER_HOST: ``--host``, else the daemons' first name that is not this
    machine (said on stderr). Never silently this machine: a bundle whose daemons are named
    only localhost/127.0.0.1 needs ``--host``."""
    server = stored_cert(values, names.cert(Item.SERVER))
    sans = list(subject_alt_names(server)) if server is not None else []
    valid = f"valid for {', '.join(sans)}" if sans else "no server certificate stored"
    if given:
        _check_named(given, values, names, err)
        return given
    remote = [name for name in sans if not name.startswith("*.") and not _is_this_machine(name)]
    if not remote:
        raise CliError(
            f"pass --host: the daemons' certificate names no host but this machine ({valid}), "
            "so DOCKER_HOST would reach the Docker on this machine, not a fleet's daemon. "
            "Use an instance's name or address, or --host localhost for a daemon you started "
            "here with these files",
            EXIT_USAGE,
        )
    print(
        f"docker-tls: DOCKER_HOST uses {remote[0]}, the first name in the daemons' certificate "
        f"that is not this machine ({valid}); --host picks another",
        file=err,
    )
    return remote[0]


def _docker_cli(args: argparse.Namespace, directory: Path) -> str:
    """The docker CLI a ``--context`` needs, checked before anything is written."""
    if "," in str(directory) or "=" in str(directory):
        raise CliError("--context needs a --dir without ',' or '=' (docker's --docker syntax)")
    docker = shutil.which("docker")
    if docker is None:
        raise CliError("--context needs the docker CLI on PATH")
    return docker


def _docker_context(
    docker: str, name: str, host: str, targets: Mapping[str, Path], err: TextIO
) -> None:
    """Create the Docker context ``name`` for ``host`` with the exported files, or update it:
    today's way to name a remote daemon (``docker --context NAME …``, ``docker context use``).
    Docker copies the files into its own context store (~/.docker/contexts, or DOCKER_CONFIG)."""
    endpoint = (
        f"host={host},ca={targets['ca.pem']},cert={targets['cert.pem']},key={targets['key.pem']}"
    )
    exists = subprocess.run(
        [docker, "context", "inspect", name], capture_output=True, text=True, check=False
    )
    verb = "update" if exists.returncode == 0 else "create"
    done = subprocess.run(
        [docker, "context", verb, name, "--description", "docker-tls export", "--docker", endpoint],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise CliError(f"docker context {verb} {name} failed: {done.stderr.strip()[-300:]}")
    print(
        f"docker-tls: docker context {name} {verb}d for {host} "
        f"(docker --context {name} version, or docker context use {name})",
        file=err,
    )


def _trust_note(trusted: Sequence[x509.Certificate], cert: x509.Certificate) -> str:
    """Which CA the exported certificate chains to, and what else ca.pem trusts."""
    signer = next((ca for ca in trusted if signed_by(cert, ca)), None)
    text = f"CA {fingerprint(signer)[:16]}…" if signer else "CA: none in ca.pem signed it"
    if len(trusted) > 1:
        others = ", ".join(f"{fingerprint(ca)[:16]}…" for ca in trusted if ca is not signer)
        text += f"; ca.pem also trusts {others} (a staged CA rotation)"
    return text


def cmd_export(args: argparse.Namespace, store: ParameterStore, out: TextIO, err: TextIO) -> int:
    if args.env_only and args.force:
        raise CliError("--env-only writes nothing; --force is for rewriting files", EXIT_USAGE)
    if args.server and args.context:
        raise CliError("--context is for a client export (it names the daemon to dial)", EXIT_USAGE)
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
        trusted = certificates_from_stored(values[names.cert(Item.CA)])  # ca.pem: all of them
        cert = certificate_from_stored(values[names.cert(item)])
        key = private_key_from_stored(values[names.key(item)])
    except Unreadable as error:
        raise CliError(f"a stored value is unreadable ({error}): run a stack Update") from None
    if not same_key(cert, key):
        raise CliError(f"{names.key(item)} does not match {names.cert(item)}: run a stack Update")
    props, _ = health_properties(stored, {}, now)
    health = plan(stored.bundle, props, rotate=False, now=now)
    for item_plan in health:
        if item_plan.item in (Item.CA, item) and item_plan.decision is not Decision.REUSE:
            print(
                f"docker-tls: warning: {item_plan.item.value} is not healthy "
                f"({item_plan.reason}); the next Update would {item_plan.decision.value} it",
                file=err,
            )

    if args.server:
        host = args.host or "0.0.0.0"  # noqa: S104 (a fleet's daemon listens on every interface)
        if args.host:
            _check_named(args.host, values, names, err)
    else:
        host = _docker_host(args.host, values, names, err)
    directory = args.dir.expanduser().absolute()
    targets = {filename: directory / filename for filename in wanted}
    if args.env_only:
        _check_exported(targets, {f: values[p] for f, p in wanted.items()}, err)
    else:
        docker = _docker_cli(args, directory) if args.context else None
        _write(targets, {f: values[p] for f, p in wanted.items()}, directory, args.force, err)
        print(
            f"docker-tls: wrote {', '.join(str(p) for p in targets.values())} "
            f"(key 0600); {_trust_note(trusted, cert)}",
            file=err,
        )
        if docker is not None:
            _docker_context(docker, args.context, f"tcp://{host}:{args.port}", targets, err)
    for line in _to_evaluate(args, host, directory, targets):
        print(line, file=out)
    return EXIT_OK


def _check_named(host: str, values: Mapping[str, str], names: BundleNames, err: TextIO) -> None:
    """Warn when ``host`` is not a name the daemons' certificate holds: TLS clients that dial
    it refuse the daemon."""
    server = stored_cert(values, names.cert(Item.SERVER))
    sans = list(subject_alt_names(server)) if server is not None else []
    if sans and not named_by(host, sans):
        print(
            f"docker-tls: warning: {host} is not in the daemons' certificate (valid for "
            f"{', '.join(sans)}): docker will refuse the connection",
            file=err,
        )


def _write(
    targets: Mapping[str, Path],
    contents: Mapping[str, str],
    directory: Path,
    force: bool,
    err: TextIO,
) -> None:
    """Write each file (keys 0600) into ``directory``, made 0700 if new; existing files only
    with ``force``."""
    existing = [name for name, path in targets.items() if path.exists()]
    if existing and not force:
        raise CliError(
            f"{directory} already holds {', '.join(existing)}: --env-only prints the "
            "environment for them (writing nothing), --force rewrites them"
        )
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
        is_key = filename.endswith("key.pem")
        _write_file(path, base64.b64decode(contents[filename].strip()), 0o600 if is_key else 0o644)


def _check_exported(targets: Mapping[str, Path], contents: Mapping[str, str], err: TextIO) -> None:
    """``--env-only``: the files must be there; one that differs from the stored value is
    named (the bundle changed since the export), and nothing is written."""
    missing = [str(path) for path in targets.values() if not path.is_file()]
    if missing:
        raise CliError(
            f"{', '.join(missing)} not found: export without --env-only writes them",
            EXIT_NOT_FOUND,
        )
    for filename, path in targets.items():
        if path.read_bytes() != base64.b64decode(contents[filename].strip()):
            print(
                f"docker-tls: warning: {path} is not what the rack stores now (the bundle "
                "changed since it was exported): export --force rewrites it",
                file=err,
            )


def _to_evaluate(
    args: argparse.Namespace, host: str, directory: Path, targets: Mapping[str, Path]
) -> list[str]:
    """What stdout carries: the dockerd command, the context to use, or the environment."""
    if args.server:
        return [
            f"dockerd --tlsverify --tlscacert={targets['ca.pem']} "
            f"--tlscert={targets['server-cert.pem']} --tlskey={targets['server-key.pem']} "
            f"-H={_bracketed(host)}:{args.port}"
        ]
    if args.context:
        # DOCKER_HOST (and the TLS variables with it) would override the context: a shell
        # that evaluates this uses the context and nothing else.
        return [
            f"# docker context {args.context} dials tcp://{host}:{args.port} with these files: "
            f"docker --context {args.context} version, or docker context use {args.context}",
            "unset DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH",
            f"export DOCKER_CONTEXT={shlex.quote(args.context)}",
        ]
    return [
        f"export DOCKER_HOST=tcp://{_bracketed(host)}:{args.port}",
        "export DOCKER_TLS_VERIFY=1",
        f"export DOCKER_CERT_PATH={shlex.quote(str(directory))}",
    ]


def _bracketed(host: str) -> str:
    """An IPv6 address in a URL's host part needs brackets."""
    with suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host
