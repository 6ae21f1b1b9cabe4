"""``docker-tls``: the command line, wiring the commands to a parameter store."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from docker_tls_cli import calm
from docker_tls_cli.common import CliError, as_store_error, parse_properties, store_failure
from docker_tls_cli.export import DOCKER_TLS_PORT, cmd_export
from docker_tls_cli.inspection import cmd_inspect
from docker_tls_cli.lambda_code import CHECKOUT, ParameterStore
from docker_tls_cli.plan import cmd_plan
from docker_tls_cli.verify import EXIT_REFRESH, cmd_verify

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient


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
    parser.add_argument("--version", action="version", version=f"docker-tls {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--rack", required=True, help="the generator's Rack property")
        sub.add_argument(
            "--local",
            action="store_true",
            help="use the lasting local SSM endpoint (make local-ssm; started if need be); "
            "inspect and export create a default bundle for --rack there if it has none, "
            "plan never writes",
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
        "--env-only",
        action="store_true",
        help="write nothing: print the environment (or the context) for the files already in "
        "--dir, as docker-machine env does; re-run it in every new shell",
    )
    export_cmd.add_argument(
        "--host",
        help="host for DOCKER_HOST: an instance's name or address (default: the first name in "
        "the daemons' certificate that is not this machine; required when there is none)",
    )
    export_cmd.add_argument(
        "--port",
        type=int,
        default=DOCKER_TLS_PORT,
        help="the daemons' TLS port (DOCKER_HOST, or where --server's dockerd listens)",
    )
    export_cmd.add_argument(
        "--context",
        metavar="NAME",
        help="create (or update) the Docker context NAME for that host with these files and "
        "print how to use it instead of DOCKER_* variables (which would override a context)",
    )
    verify_cmd = command(
        "verify",
        "check held files (an exported directory, or a daemon's) against the rack's current "
        f"stage and say what to refresh; exit 0 when current, {EXIT_REFRESH} when not",
    )
    verify_cmd.add_argument("--dir", type=Path, help="a directory docker-tls export wrote")
    verify_cmd.add_argument("--ca", type=Path, help="a trust bundle elsewhere (e.g. /etc/ca.pem)")
    verify_cmd.add_argument("--cert", type=Path, help="a certificate elsewhere")
    verify_cmd.add_argument(
        "--key", type=Path, help="--cert's private key, to check they match (never shown)"
    )
    verify_cmd.add_argument(
        "--server", action="store_true", help="--cert is a daemon's server certificate"
    )
    return parser


_COMMANDS = {"plan": cmd_plan, "inspect": cmd_inspect, "export": cmd_export, "verify": cmd_verify}


def _version() -> str:
    try:
        return importlib.metadata.version("docker-tls")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def _local_store(rack: str, err: TextIO, *, create: bool) -> ParameterStore:
    """The lasting local SSM endpoint (started if need be). With ``create``, it holds a bundle
    for ``rack``: the one an earlier command or ``make invoke`` made, else one a Create with
    only ``Rack`` makes now. Every later ``--local`` command sees the same bundle. ``plan``
    passes ``create=False``: it never writes, so a mistyped rack stays missing."""
    if CHECKOUT is None:
        # devkit/ (and moto, a development dependency) never ship in the wheel.
        raise CliError(
            "--local runs the local SSM endpoint from a source checkout of docker-tls, and this "
            "docker-tls is installed without one: use the checkout's .venv/bin/docker-tls "
            "(make local-ssm there), or leave out --local to read SSM in AWS"
        )
    try:
        from devkit import local_endpoint
    except ImportError as error:
        raise CliError(
            f"--local needs the development extras ({error.name} is missing): "
            f"run make in {CHECKOUT}, or pip install -e '.[dev]' there"
        ) from None
    from docker_tls_cli.lambda_code import BundleNames, ensure

    def note(text: str) -> None:
        print(f"docker-tls: --local: {text}", file=err)

    try:
        store = local_endpoint.store(note, lambda: calm.ssm_client(note))
    except local_endpoint.EndpointError as error:
        raise CliError(str(error)) from None
    if create and not store.read(BundleNames.for_rack(rack).material):
        now = dt.datetime.now(dt.UTC)
        outcome = ensure(store, parse_properties(rack, {}, now), rotate=False, now=now)
        note(f"Rack {rack!r} had no bundle there: {outcome.action.value} one (default properties)")
    return store


def main(
    argv: Sequence[str] | None = None,
    *,
    client: SSMClient | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The ``docker-tls`` console script; ``client`` replaces the default SSM client."""
    chosen_out = out or sys.stdout
    return calm.calmly("docker-tls", lambda: _run(argv, client, chosen_out, err), chosen_out)


def _run(
    argv: Sequence[str] | None, client: SSMClient | None, out: TextIO, err: TextIO | None
) -> int:
    err = err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.at is None:
        args.at = dt.datetime.now(dt.UTC)

    def note(text: str) -> None:
        print(f"docker-tls: {text}", file=err, flush=True)

    try:
        if args.local:
            # plan and verify only read: a mistyped rack must stay missing, not be created.
            store = _local_store(args.rack, err, create=args.command not in {"plan", "verify"})
        else:
            store = ParameterStore(client or _terminal_client(note))
        return _COMMANDS[args.command](args, store, out, err)
    except CliError as error:
        print(f"docker-tls: {error}", file=err)
        if args.command == "export":
            # Its stdout is meant for eval "$(docker-tls export …)", where the exit code is
            # lost: a failing statement makes the eval fail too, instead of setting nothing.
            print(f"false  # docker-tls export failed (exit {error.exit_code})", file=out)
        return error.exit_code


def _terminal_client(note: Callable[[str], None]) -> SSMClient:
    from botocore.exceptions import BotoCoreError

    try:
        return calm.ssm_client(note)
    except BotoCoreError as error:  # no region: boto3 needs one to make a client at all
        raise store_failure(as_store_error("GetParameters", error), "an AWS region") from None


if __name__ == "__main__":
    sys.exit(main())
