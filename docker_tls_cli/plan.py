"""``docker-tls plan``: what a Create/Update would do right now, per item; writes nothing."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from cryptography import x509

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
from docker_tls_cli.lambda_code import (
    Action,
    Decision,
    Item,
    ItemPlan,
    ParameterStore,
    Plan,
    StageRefused,
    fingerprint,
    plan,
)
from docker_tls_cli.trust import RackTrust, holds, issuer_among, label, same_ca

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
#: A reused plan that still removes something (the rollback window of a retire closing).
_REUSED_WITH_REMOVALS = "no certificate changes; only the parameters below are removed"


def _ca_entry(cert: x509.Certificate, trust: RackTrust) -> dict[str, Any]:
    return {
        "sha256": fingerprint(cert),
        "subject": cert.subject.rfc4514_string(),
        "role": trust.role(cert),
    }


def _writes(result: Plan) -> list[str]:
    """Every parameter the Update would write, in the order it would."""
    names = result.names
    written = [m.name for m in result.staging.moves]
    ca = result.decision(Item.CA)
    if ca is Decision.ROTATE:
        written.append(names.key(Item.CA))
    elif result.staging.introduce is not None:
        written.append(names.next_ca_key)
    if ca in (Decision.ROTATE, Decision.RENEW) or result.bundle_changes:
        written.append(names.cert(Item.CA))
    for item_plan in result.items[1:]:
        if item_plan.decision is not Decision.REUSE:
            if item_plan.kept_key is None:
                written.append(names.key(item_plan.item))
            written.append(names.cert(item_plan.item))
    return list(dict.fromkeys(written))


def _leaf_reason(item_plan: ItemPlan, result: Plan, trust: RackTrust) -> str:
    """The decision's reason, said as a staged rotation means it: a leaf signed by a CA that
    stays trusted but signs no more is reissued because the signer changes, not because
    something is wrong with it."""
    after = result.authority.cert if result.authority else None
    if item_plan.decision is not Decision.REISSUE or after is None:
        return item_plan.reason
    if not item_plan.reason.startswith("not signed by the stored CA"):
        return item_plan.reason
    leaf = result.stored.leaves[item_plan.item].cert
    known = (*trust.trusted, *((trust.retired,) if trust.retired else ()))
    issuer = issuer_among(leaf, known) if leaf is not None else None
    if issuer is None or same_ca(issuer, after):
        return item_plan.reason
    return (
        f"the signing CA changes to {label(after)}: reissued by it (the stored one is "
        f"signed by {label(issuer)}, which stops signing)"
    )


def _credentials(result: Plan, trust: RackTrust, after: list[x509.Certificate]) -> list[str]:
    """Which held files (ca.pem, certificates, instances' material) stop working or need a
    refresh because of this update, in the order an operator acts on them."""
    if result.action is Action.CREATED:
        return []
    if result.authority is None:
        return [
            "every ca.pem, client certificate and daemon held now stops working with the new "
            "CA: replace every instance and re-export every held copy (docker-tls export --force)"
        ]
    lines: list[str] = []
    signer_after = result.authority.cert
    for ca in trust.trusted:
        if holds(after, ca):
            continue
        if trust.previous is not None and same_ca(ca, trust.previous):
            lines.append(
                f"client certificates issued before the switch (signed by {label(ca)}) will be "
                "refused by daemons that take the new ca.pem, and daemons still serving a "
                "certificate signed by it by clients that do: re-export every held copy "
                "(docker-tls verify --rack R --dir D says which) and replace every instance "
                "launched before the switch, before this update"
            )
        elif trust.introduced is not None and same_ca(ca, trust.introduced):
            lines.append(
                f"certificates signed by {label(ca)} will be refused: it never signed, unless "
                "a switch was rolled back (instances launched during the switch hold its "
                "certificates: replace them first)"
            )
        else:
            lines.append(f"certificates signed by {label(ca)} will be refused")
    added = [ca for ca in after if not holds(trust.trusted, ca)]
    if result.staging.introduce is not None or added:
        new = ", ".join(label(ca) for ca in added) or "the new CA"
        lines.append(
            f"ca.pem files held now lack {new}: refresh every one (docker-tls export --force; "
            "docker-tls verify checks) before the switch; held certificates keep working"
        )
    if trust.signer is not None and not same_ca(trust.signer, signer_after):
        kept = holds(after, trust.signer)
        lines.append(
            f"the server and client certificates are reissued by {label(signer_after)}: a "
            "ca.pem without it refuses the new daemons (refresh it first); certificates "
            f"signed by {label(trust.signer)} keep working "
            + ("while it stays trusted (until the retire)" if kept else "no more")
        )
    if trust.retired is not None and result.names.previous_ca_cert in result.removals:
        lines.append(
            f"the retired CA's certificate ({label(trust.retired)}) is removed: a rollback of "
            "the retire can no longer trust it again"
        )
    return lines or ["no held ca.pem, certificate or daemon stops working"]


def plan_report(result: Plan, rack: str, now: dt.datetime) -> dict[str, Any]:
    """The plan as plain data (what ``--json`` prints), from the bundle it was decided on."""
    trust = RackTrust.read(result.stored)
    after = [
        *((result.authority.cert,) if result.authority else ()),
        *result.trusted,
    ]
    trusted_after = [_ca_entry(cert, trust) for cert in after]
    if result.staging.introduce is not None or result.authority is None:
        trusted_after.append({"sha256": None, "subject": "a new CA", "role": "new"})
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
                "reason": _leaf_reason(p, result, trust),
                "not_after": when(p.not_after),
            }
            for p in result
        ],
        "signs_after": trusted_after[0]["subject"]
        if result.authority is None
        else label(result.authority.cert),
        "trusted_before": [_ca_entry(cert, trust) for cert in trust.trusted],
        "trusted_after": trusted_after,
        "parameters_written": _writes(result),
        "parameters_removed": [
            *result.removals,
            # The handler removes it when the rack's own stack adopts the bundle.
            *([result.names.version_track] if result.remove_version_track else []),
        ],
        "held_credentials": _credentials(result, trust, after),
    }


def _ca_line(title: str, cas: Sequence[Mapping[str, Any]]) -> str:
    if not cas:
        return f"{title} nothing stored"
    return f"{title} " + ", then ".join(
        f"{'signs: ' if i == 0 else ''}{c['subject']}"
        + (f" (SHA-256 {c['sha256'][:16]}…)" if c["sha256"] else "")
        for i, c in enumerate(cas)
    )


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
    print(_ca_line("ca-cert before:", report["trusted_before"]), file=out)
    print(_ca_line("ca-cert after:", report["trusted_after"]), file=out)
    summary = _ACTION_SUMMARY[report["action"]]
    if report["action"] == "reused" and report["parameters_removed"]:
        summary = _REUSED_WITH_REMOVALS
    print(f"Action: {report['action']}: {summary}", file=out)
    for name in report["parameters_written"]:
        print(f"  {name} parameter is written", file=out)
    for name in report["parameters_removed"]:
        legacy = name == f"{report['prefix']}-version-track"
        print(f"  {'and the legacy ' if legacy else ''}{name} parameter is removed", file=out)
    if report["held_credentials"]:
        print("Held credentials:", file=out)
        for line in report["held_credentials"]:
            print(f"  - {line}", file=out)
    print("(plan writes nothing)", file=out)


def cmd_plan(args: argparse.Namespace, store: ParameterStore, out: TextIO, err: TextIO) -> int:
    now = args.at
    props = parse_properties(args.rack, property_pairs(args.property), now)
    stored = read_bundle(store, props.rack)
    try:
        # What an Update sending these properties would do to a stack whose template is
        # still at the stored stage.
        result = plan(
            stored.bundle,
            props,
            rotate=args.rotate,
            now=now,
            previous_stage=stored.bundle.stage,
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
