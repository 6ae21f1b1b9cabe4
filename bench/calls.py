"""SSM calls per request: what each kind of request costs in reads and writes.

The figure the project promises first: an Update that finds its bundle intact makes one SSM
read and no write. Counted at botocore's ``before-call`` (:class:`harness.Harness`), once per
API call the handler makes, over one rack's whole life: Create on an empty store, an Update
that reuses, an Update that reissues one leaf, the getter's Create, Delete.
"""

from __future__ import annotations

from typing import Any

from harness import Harness, new_rack
from report import table

from handler import GETTER
from handler.names import rack_prefix


def ssm_calls(h: Harness) -> tuple[str, dict[str, Any]]:
    rack = new_rack()
    props = {"Rack": rack}
    pid = rack_prefix(rack)
    rows: list[list[Any]] = []
    result: dict[str, Any] = {}

    def record(label: str, body: dict[str, Any]) -> None:
        calls = dict(h.calls)
        reads = sum(n for op, n in calls.items() if op.startswith("Get"))
        writes = sum(n for op, n in calls.items() if not op.startswith("Get"))
        ops = ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
        rows.append([label, body.get("Data", {}).get("Action", "-"), reads, writes, ops])
        result[label] = {"reads": reads, "writes": writes, "calls": calls}

    body, _ = h.invoke("Create", props)
    record("Create, empty store", body)
    body, _ = h.invoke("Update", props, physical_id=pid, old_properties=props)
    record("Update, reuse", body)
    changed = {**props, "ServerSubjectAltNames": "localhost,127.0.0.1,docker.internal"}
    body, _ = h.invoke("Update", changed, physical_id=pid, old_properties=props)
    record("Update, one leaf reissued (server SANs changed)", body)
    getter = {"Rack": rack, "ParameterKey": f"{pid}-docker-tls-ca-cert"}
    body, _ = h.invoke("Create", getter, resource_type=GETTER)
    record("Getter Create (CA certificate)", body)
    body, _ = h.invoke("Delete", changed, physical_id=pid)
    record("Delete", body)
    text = table(["request", "Action", "read calls", "write calls", "by operation"], rows)
    return text, result
