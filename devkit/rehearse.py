"""Rehearse a staged CA rotation (docs/OPERATIONS.md, "Replacing the CA in stages") against the
lasting local SSM endpoint, as CloudFormation would drive it:

    python -m devkit.rehearse create    --rack R [--property KeyAlgorithm=ECDSA-P256 ...]
    python -m devkit.rehearse introduce --rack R     # make rehearse STAGE=introduce RACK=R
    python -m devkit.rehearse switch    --rack R
    python -m devkit.rehearse rollback  --rack R     # CloudFormation rolling the last update back
    python -m devkit.rehearse retire    --rack R     # RotationStage removed after a switch
    python -m devkit.rehearse cancel    --rack R     # RotationStage removed after an introduce
    python -m devkit.rehearse update    --rack R [--property Version=2]   # an ordinary update
    python -m devkit.rehearse status    --rack R

Each step is one Update event (``devkit.events``) through the real handler entry point
(``devkit.invoke``), whose ``OldResourceProperties`` are the properties the stack has now: the
rehearsal remembers them in ``rehearsals/<prefix>.json`` beside the endpoint's state, with the
properties before the last update, which a ``rollback`` sends back (ResourceProperties = the
ones before, OldResourceProperties = the ones of the update being undone), as CloudFormation
does. Without a record, the properties are derived from what SSM holds (key algorithm, server
names, stage). Before sending, the record's stage is compared with the stage SSM holds: a
rehearsal never sends an ``OldResourceProperties`` that contradicts the store.

The response is printed as JSON on stdout (private keys masked as ``make invoke`` masks them),
notes on stderr. Exit 0 when the handler answered SUCCESS, 1 when FAILED (nothing recorded),
2 for a step that does not fit the stage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from devkit import invoke, local_endpoint
from devkit.events import event
from handler import GENERATOR
from handler.certificates import KeyAlgorithm, subject_alt_names
from handler.codec import Unreadable, certificate_from_stored, private_key_from_stored
from handler.model import RotationStage
from handler.names import BundleNames, Item
from handler.properties import parse_stage
from handler.store import ParameterStore, StoreError
from handler.stored import StoredBundle

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STEPS = ("create", "introduce", "switch", "retire", "cancel", "rollback", "update", "status")
LOGICAL_ID = "DockerTLS"
#: Not a real ResponseURL: devkit.invoke replaces it with its local receiver's.
_RESPONSE_URL = "https://cloudformation-custom-resource-response.invalid/rehearsal"


class RehearsalError(Exception):
    """A step that cannot be sent; ``exit_code`` says why."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Record:
    """What the rehearsed stack looks like to CloudFormation: its resource's properties now,
    and those before its last update (for a rollback)."""

    rack: str
    stack_id: str
    logical_id: str
    properties: dict[str, Any]
    previous: dict[str, Any] | None = None
    history: list[str] = field(default_factory=list)  # one line per answered step

    @property
    def stage(self) -> RotationStage | None:
        return parse_stage(self.properties.get("RotationStage"))


def record_path(rack: str, directory: Path | None = None) -> Path:
    directory = directory or local_endpoint.state_dir()
    return directory / "rehearsals" / f"{BundleNames.for_rack(rack).prefix}.json"


def load(rack: str) -> Record | None:
    path = record_path(rack)
    try:
        return Record(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as error:
        raise RehearsalError(f"{path} is unreadable ({error}): delete it to start over") from None


def save(record: Record) -> None:
    path = record_path(record.rack)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(record), indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _stage_text(stage: RotationStage | None) -> str:
    return stage.value if stage else "none"


@contextmanager
def endpoint_environment(note: TextIO) -> Iterator[local_endpoint.Endpoint]:
    """The lasting local endpoint (started if need be) as this process's AWS environment, put
    back afterwards. Never real AWS: another endpoint already configured is refused."""
    try:
        endpoint, started = local_endpoint.start()
    except local_endpoint.EndpointError as error:
        raise RehearsalError(str(error), EXIT_FAILED) from None
    configured = os.environ.get("AWS_ENDPOINT_URL_SSM")
    if configured and configured.rstrip("/") != endpoint.url:
        raise RehearsalError(
            f"AWS_ENDPOINT_URL_SSM={configured} is not the lasting local endpoint "
            f"{endpoint.url}: a rehearsal only ever talks to that one "
            '(eval "$(make -s local-ssm)" sets it)'
        )
    print(
        f"rehearse: the local SSM endpoint {endpoint.url} "
        f"({'started; ' if started else ''}make local-ssm-stop stops it)",
        file=note,
    )
    with local_endpoint.applied(endpoint):
        yield endpoint


def derived_properties(rack: str, values: Mapping[str, str]) -> dict[str, Any]:
    """The properties a stack that made this bundle has, as far as SSM tells: the leaves' key
    algorithm, the server certificate's names, and the stage."""
    names = BundleNames.for_rack(rack)
    properties: dict[str, Any] = {"Rack": rack}
    try:
        algorithm = KeyAlgorithm.of(private_key_from_stored(values[names.key(Item.CLIENT)]))
        if algorithm is not None:
            properties["KeyAlgorithm"] = algorithm.value
        server = certificate_from_stored(values[names.cert(Item.SERVER)])
        properties["ServerSubjectAltNames"] = ",".join(subject_alt_names(server))
    except (KeyError, Unreadable):
        pass
    stage = StoredBundle.decode(values, names).stage
    if stage is not None:
        properties["RotationStage"] = stage.value
    return properties


def _owner(values: Mapping[str, str], names: BundleNames) -> tuple[str, str] | None:
    """The owning resource recorded beside the bundle (issue 17), when there is one."""
    try:
        owner = json.loads(values[f"{names.prefix}-docker-tls-owner"])
        return str(owner["StackId"]), str(owner["LogicalResourceId"])
    except (KeyError, ValueError, TypeError):
        return None


def _read(store: ParameterStore, names: BundleNames) -> dict[str, str]:
    owner = f"{names.prefix}-docker-tls-owner"
    return {n: p.value for n, p in store.read((*names.everything, owner)).items()}


def _send(
    request_type: str,
    record: Record,
    properties: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    note: TextIO,
) -> dict[str, Any]:
    def bare(given: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in given.items() if k != "ServiceToken"}  # event() adds it

    prefix = BundleNames.for_rack(record.rack).prefix
    body = event(
        request_type,
        GENERATOR,
        record.logical_id,
        bare(properties),
        response_url=_RESPONSE_URL,
        physical_id=None if request_type == "Create" else prefix,
        old_properties=None if old is None else bare(old),
    )
    body["StackId"] = record.stack_id
    try:
        return invoke.run(body, seed=False, note=note)
    except invoke.InvokeError as error:
        raise RehearsalError(str(error), error.exit_code) from None


def _target(step: str, record: Record, given: Mapping[str, str]) -> dict[str, Any]:
    """The properties ``step`` sends, from the record's current ones."""
    current = record.stage
    properties = {**record.properties, **given}
    if step in ("introduce", "switch"):
        properties["RotationStage"] = step
        return properties
    if step == "retire" and current is not RotationStage.SWITCH:
        raise RehearsalError(
            f"retire removes RotationStage after a switch; the stack is at "
            f"{_stage_text(current)} ({'cancel' if current else 'introduce'} fits)"
        )
    if step == "cancel" and current is not RotationStage.INTRODUCE:
        raise RehearsalError(
            f"cancel removes RotationStage after an introduce; the stack is at "
            f"{_stage_text(current)}"
        )
    if step in ("retire", "cancel"):
        properties.pop("RotationStage", None)
    return properties


def rehearse(step: str, rack: str, given: Mapping[str, str], note: TextIO) -> dict[str, Any]:
    """Send ``step`` for ``rack`` to the lasting endpoint; returns the response (or, for
    ``status``, the record) and records what was answered."""
    names = BundleNames.for_rack(rack)
    with endpoint_environment(note):
        store = ParameterStore()
        values = _read(store, names)
        bundle = any(name in values for name in names.material)
        record = load(rack)
        if record is None:
            owner = _owner(values, names)
            stack_id = (
                owner[0]
                if owner
                else f"arn:aws:cloudformation:us-east-1:123456789012:stack/docker-tls-rehearsal/"
                f"{uuid.uuid4()}"
            )
            record = Record(rack, stack_id, owner[1] if owner else LOGICAL_ID, {"Rack": rack})
            if bundle:
                record.properties = derived_properties(rack, values)
                print(
                    f"rehearse: no record of Rack {rack!r}: its properties are derived from "
                    f"SSM: {json.dumps(record.properties)}",
                    file=note,
                )
        held = StoredBundle.decode(values, names).stage
        if bundle and held is not record.stage:
            raise RehearsalError(
                f"the record ({record_path(rack)}) says RotationStage "
                f"{_stage_text(record.stage)}, SSM holds stage {_stage_text(held)}: the "
                "bundle changed outside the rehearsal; delete the record to derive the "
                "properties from SSM again"
            )
        if step == "status":
            print(
                f"rehearse: Rack {rack!r} is at RotationStage {_stage_text(held)}"
                + ("" if bundle else " (nothing stored: create first)"),
                file=note,
            )
            return asdict(record)
        if step == "create" or not bundle:
            if bundle:
                raise RehearsalError(f"Rack {rack!r} already has a bundle: {step} it instead")
            if step != "create":
                raise RehearsalError(f"Rack {rack!r} has no bundle yet: create it first")
            properties = {**record.properties, **given}
            response = _send("Create", record, properties, None, note)
            old_properties: dict[str, Any] | None = None
        elif step == "rollback":
            if record.previous is None:
                raise RehearsalError(
                    "nothing to roll back: CloudFormation rolls back only the last update, "
                    "once (the record holds no update since the last rollback or create)"
                )
            properties = dict(record.previous)
            response = _send("Update", record, properties, record.properties, note)
            old_properties = None
        else:
            properties = _target(step, record, given)
            response = _send("Update", record, properties, record.properties, note)
            old_properties = record.properties
        data = response.get("Data") or {}
        line = (
            f"{step}: RotationStage {_stage_text(record.stage)} -> "
            f"{_stage_text(parse_stage(properties.get('RotationStage')))}: "
            f"{response.get('Status')} {data.get('Action') or response.get('Reason', '')}"
        )
        print(f"rehearse: {line}", file=note)
        if response.get("Status") == "SUCCESS":
            record.properties = properties
            record.previous = old_properties
            record.history.append(line)
            save(record)
        return response


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.rehearse",
        description="Rehearse the staged CA rotation against the lasting local SSM endpoint: "
        "each step is the Update CloudFormation would send, through the real handler.",
    )
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--rack", default="rehearsal", help="the Rack (default: rehearsal)")
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a property to set in this step's ResourceProperties (repeatable)",
    )
    args = parser.parse_args(argv)
    out = out or sys.stdout
    err = err or sys.stderr
    given: dict[str, str] = {}
    for pair in args.property:
        key, sep, value = pair.partition("=")
        if not sep or not key or key in ("Rack", "RotationStage"):
            print(
                f"rehearse: --property {pair!r}: KEY=VALUE, not Rack or RotationStage "
                "(the step sets the stage)",
                file=err,
            )
            return EXIT_USAGE
        given[key] = value
    try:
        result = rehearse(args.step, args.rack, given, err)
    except RehearsalError as error:
        print(f"rehearse: {error}", file=err)
        return error.exit_code
    except StoreError as error:
        print(f"rehearse: the local endpoint did not answer: {error}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("rehearse: interrupted; the record is written only after an answered step", file=err)
        return 130
    if args.step == "status":
        print(json.dumps(result, indent=2), file=out)
        return EXIT_OK
    print(json.dumps(invoke.masked(result), indent=2), file=out)
    if result.get("Status") != "SUCCESS":
        return EXIT_FAILED
    print(
        f"rehearse: next: roll out (docker-tls verify --rack {args.rack} --dir D says "
        "whether held files are current), then the next step",
        file=err,
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
