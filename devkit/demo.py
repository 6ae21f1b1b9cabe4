"""A whole stack lifecycle against a local SSM endpoint and a local CloudFormation receiver.

``make demo`` runs this: Create; Update with a new Version; Update after the client
certificate was made to expire soon; getter reads; Delete. Each step goes through
``handler.app.lambda_handler`` with a complete CloudFormation event, over real HTTP to SSM
(moto's server) and real HTTPS back to the receiver, and prints the Action, the CA
fingerprint and how many parameters were written. Nothing is printed that is secret.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import boto3

from devkit.events import LambdaContext, event
from devkit.receiver import Receiver, response_receiver
from devkit.ssm_server import ssm_endpoint
from handler import GENERATOR, GETTER
from handler.certificates import CertificateAuthority, KeyAlgorithm, Purpose
from handler.codec import certificate_from_stored, private_key_from_stored, to_stored
from handler.names import BundleNames, Item

RACK = "docker-tls-demo"


def _versions(ssm: Any, names: BundleNames) -> dict[str, int]:
    found = ssm.get_parameters(Names=list(names.everything))["Parameters"]
    return {p["Name"]: p["Version"] for p in found}


def _written(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(1 for name, version in after.items() if before.get(name) != version)


def _invoke(receiver: Receiver, body: dict[str, Any]) -> dict[str, Any]:
    from handler import app

    app.lambda_handler(body, LambdaContext())
    responses = receiver.responses(body["ResponseURL"])
    if len(responses) != 1:
        raise SystemExit(f"expected one response, CloudFormation would have got {len(responses)}")
    return responses[0]


def _expire_client_soon(ssm: Any, names: BundleNames) -> str:
    """Age the client certificate: re-sign it by the stored CA with 30 days left."""
    values = {
        p["Name"]: p["Value"]
        for p in ssm.get_parameters(Names=list(names.material), WithDecryption=True)["Parameters"]
    }
    ca = CertificateAuthority(
        certificate_from_stored(values[names.cert(Item.CA)]),
        private_key_from_stored(values[names.key(Item.CA)]),
    )
    leaf = ca.issue(
        Purpose.CLIENT, KeyAlgorithm.RSA_2048, validity_days=30, now=dt.datetime.now(dt.UTC)
    )
    ssm.put_parameter(
        Name=names.cert(Item.CLIENT),
        Value=to_stored(leaf.cert_pem()),
        Type="String",
        Overwrite=True,
    )
    ssm.put_parameter(
        Name=names.key(Item.CLIENT),
        Value=to_stored(leaf.key_pem()),
        Type="SecureString",
        Overwrite=True,
    )
    return leaf.cert.not_valid_after_utc.strftime("%Y-%m-%d")


def main() -> int:
    with ssm_endpoint() as (url, lasting), response_receiver() as receiver:
        ssm = boto3.client("ssm", endpoint_url=url)
        names = BundleNames.for_rack(RACK)
        props = {"Rack": RACK, "Version": "20261127000000", "KeyAlgorithm": "RSA-2048"}
        kind = "AWS_ENDPOINT_URL_SSM" if lasting else "embedded, gone when the demo ends"
        print(
            f"SSM endpoint {url} ({kind}), CloudFormation receiver https://127.0.0.1:"
            f"{receiver.port}, Rack {RACK!r} (prefix {names.prefix})\n"
        )
        print(f"{'step':<44} {'status':<8} {'Action':<9} {'CA fingerprint':<19} written")
        fingerprints: list[str] = []
        physical = ""

        def step(label: str, body: dict[str, Any]) -> dict[str, Any]:
            before = _versions(ssm, names)
            response = _invoke(receiver, body)
            data = response.get("Data") or {}
            written = _written(before, _versions(ssm, names))
            fp = data.get("CAFingerprint", "")
            print(
                f"{label:<44} {response['Status']:<8} {data.get('Action', '-'):<9} "
                f"{(fp[:16] + '…') if fp else '-':<19} {written}"
            )
            if response["Status"] != "SUCCESS":
                print(f"  reason: {response['Reason']}")
            return response

        created = step(
            "1. Create", event("Create", GENERATOR, "DockerTLS", props, response_url=receiver.url())
        )
        physical = created["PhysicalResourceId"]
        fingerprints.append(created["Data"]["CAFingerprint"])

        newer = {**props, "Version": "20261201000000"}
        updated = step(
            "2. Update: new Version (a rack release)",
            event(
                "Update",
                GENERATOR,
                "DockerTLS",
                newer,
                response_url=receiver.url(),
                physical_id=physical,
                old_properties=props,
            ),
        )
        fingerprints.append(updated["Data"]["CAFingerprint"])

        expiry = _expire_client_soon(ssm, names)
        print(f"   (client certificate re-signed to expire {expiry}, inside RenewBeforeDays)")
        newest = {**newer, "Version": "20261215000000"}
        renewed = step(
            "3. Update: client certificate near expiry",
            event(
                "Update",
                GENERATOR,
                "DockerTLS",
                newest,
                response_url=receiver.url(),
                physical_id=physical,
                old_properties=newer,
            ),
        )
        fingerprints.append(renewed["Data"]["CAFingerprint"])
        client = certificate_from_stored(
            ssm.get_parameter(Name=names.cert(Item.CLIENT))["Parameter"]["Value"]
        )
        print(f"   (client certificate now expires {client.not_valid_after_utc:%Y-%m-%d})")

        for attribute in ("CACertSSMKey", "ServerKeySSMKey"):
            key = created["Data"][attribute]
            got = step(
                f"4. Getter {attribute}",
                event(
                    "Create",
                    GETTER,
                    f"Get{attribute}",
                    {"Rack": RACK, "ParameterKey": key, "Version": newest["Version"]},
                    response_url=receiver.url(),
                ),
            )
            print(
                f"   Value: {len(got['Data'].get('Value', ''))} characters of base64 PEM, "
                f"NoEcho {got['NoEcho']}"
            )

        step(
            "5. Delete",
            event(
                "Delete",
                GENERATOR,
                "DockerTLS",
                newest,
                response_url=receiver.url(),
                physical_id=physical,
            ),
        )
        left = _versions(ssm, names)
        print(f"   parameters left in SSM: {len(left)}")

        unchanged = len(set(fingerprints)) == 1
        print(
            f"\nCA fingerprint across Create and both Updates: "
            f"{'unchanged' if unchanged else 'CHANGED'} ({fingerprints[0]})"
        )
        return 0 if unchanged and not left else 1


if __name__ == "__main__":
    sys.exit(main())
