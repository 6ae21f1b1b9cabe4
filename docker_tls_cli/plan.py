"""``docker-tls plan``: what a Create/Update would do right now, per item; writes nothing."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, TextIO

from docker_tls_cli.common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    parse_properties,
    property_pairs,
    read_bundle,
    when,
)
from handler.bundle import Plan, plan, stored_stage
from handler.certificates import fingerprint
from handler.rotation import StageRefused
from handler.store import ParameterStore

_ACTION_SUMMARY = {
    "created": "nothing is stored for this Rack: a new CA and leaves would be created",
    "reused": "the bundle is healthy: nothing would be written",
    "renewed": "the CA key is kept: running instances keep trusting the rack",
    "rotated": (
        "WARNING: a new CA. Every instance launched earlier trusts the old one and must be "
        "replaced, or docker exec/run against it fails"
    ),
    "introduced": "a new CA is trusted beside the signing one; roll it out before switch",
    "switched": "the new CA signs (both stay trusted); roll it out before removing the stage",
    "retired": "only the new CA stays trusted: every instance must have the new material",
    "cancelled": "the introduced CA is dropped; instances from before the introduce are fine",
}


def plan_report(result: Plan, rack: str, now: dt.datetime) -> dict[str, Any]:
    """The plan as plain data (what ``--json`` prints)."""
    return {
        "rack": rack,
        "prefix": result.names.prefix,
        "as_of": when(now),
        "action": result.action.value,
        "writes_anything": result.writes_anything,
        "removes_version_track": result.remove_version_track,
        "items": [
            {
                "item": p.item.value,
                "decision": p.decision.value,
                "reason": p.reason,
                "not_after": when(p.not_after),
            }
            for p in result
        ],
        "trusted_after": [
            {"sha256": fingerprint(cert), "subject": cert.subject.rfc4514_string()}
            for cert in (
                *((result.authority.cert,) if result.authority else ()),
                *result.trusted,
            )
        ]
        + ([{"sha256": None, "subject": "a new CA"}] if result.staging.introduce else []),
        "parameters_written": [m.name for m in result.staging.moves]
        + ([result.names.next_ca_key] if result.staging.introduce else []),
        "parameters_removed": [
            *result.removals,
            # The handler removes it when the rack's own stack adopts the bundle.
            *([result.names.version_track] if result.remove_version_track else []),
        ],
    }


def _render_plan(report: Mapping[str, Any], out: TextIO) -> None:
    print(
        f"Plan for Rack {report['rack']!r} (prefix {report['prefix']}) as of {report['as_of']}",
        file=out,
    )
    print(f"  {'item':<7} {'decision':<8} {'expires':<10}  reason", file=out)
    for item in report["items"]:
        expires = (item["not_after"] or "-")[:10]
        print(
            f"  {item['item']:<7} {item['decision']:<8} {expires:<10}  {item['reason']}", file=out
        )
    trusted = report["trusted_after"]
    if len(trusted) > 1:
        print("ca-cert after: " + ", then ".join(
            f"{'signs: ' if i == 0 else ''}{c['subject']}"
            + (f" (SHA-256 {c['sha256'][:16]}…)" if c["sha256"] else "")
            for i, c in enumerate(trusted)
        ), file=out)  # fmt: skip
    print(f"Action: {report['action']}: {_ACTION_SUMMARY[report['action']]}", file=out)
    for name in report["parameters_written"]:
        print(f"  {name} parameter is written", file=out)
    for name in report["parameters_removed"]:
        legacy = name == f"{report['prefix']}-version-track"
        print(f"  {'and the legacy ' if legacy else ''}{name} parameter is removed", file=out)
    print("(plan writes nothing)", file=out)


def cmd_plan(args: argparse.Namespace, store: ParameterStore, out: TextIO, err: TextIO) -> int:
    now = args.at
    props = parse_properties(args.rack, property_pairs(args.property), now)
    stored = read_bundle(store, props.rack)
    try:
        # What an Update sending these properties would do to a stack whose template is
        # still at the stored stage.
        result = plan(
            stored.values,
            props,
            rotate=args.rotate,
            now=now,
            previous_stage=stored_stage(stored.values, stored.names),
        )
    except StageRefused as error:
        raise CliError(f"{error} Nothing would be written.", EXIT_USAGE) from None
    report = plan_report(result, props.rack, now)
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        _render_plan(report, out)
    if stored.empty:
        print(f"docker-tls: {stored.not_found()}", file=err)
        return EXIT_NOT_FOUND
    return EXIT_OK
