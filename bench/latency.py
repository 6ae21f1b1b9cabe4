"""Latency of the handler's two common paths, in-process against moto.

- Update-reuse: the request a running fleet sends on every stack update. The bundle is read
  and verified, nothing is written; its time is split (from :class:`harness.Timers`) into
  SSM, parsing the stored certificates and keys, verifying them, and the rest (properties,
  the event, response, logs), so a slower release shows where it lost the time.
- Create on an empty store: three key generations and three certificates; the share spent
  in key generation says how much of it is the algorithm's cost, not ours.

Medians and 90th percentiles, per KeyAlgorithm, after warm-up requests.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from harness import ALGORITHMS, Harness, new_rack
from report import median, ms, p90, table

from handler.names import rack_prefix

# The Update-reuse series that judge the handler, as reuse_latency's figures name them.
TOTAL = "total (with moto)"
COMPUTE = "handler compute (total - SSM)"
PARSE = "parse: base64 + PEM + X.509/key load"


def reuse_series(h: Harness, runs: int, algorithm: str) -> dict[str, list[float]]:
    rack = new_rack()
    props = {"Rack": rack, "KeyAlgorithm": algorithm}
    pid = rack_prefix(rack)
    h.invoke("Create", props)
    for _ in range(3):  # warm-up
        h.invoke("Update", props, physical_id=pid, old_properties=props)
    series: defaultdict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        body, total = h.invoke("Update", props, physical_id=pid, old_properties=props)
        assert body["Data"]["Action"] == "reused"
        spent = h.timers.spent
        series[TOTAL].append(total)
        series[COMPUTE].append(total - spent["ssm"])
        series["SSM calls (moto in-process, botocore included)"].append(spent["ssm"])
        series[PARSE].append(spent["parse"])
        series["verify: keys match, signatures, EKU, expiry, SANs"].append(spent["plan"])
        series["other: properties, event, response, logs"].append(
            total - spent["ssm"] - spent["parse"] - spent["plan"]
        )
    return series


def reuse_latency(h: Harness, runs: int) -> tuple[str, dict[str, float]]:
    series = reuse_series(h, runs, "RSA-2048")
    rows = [[name, ms(median(v)), ms(p90(v))] for name, v in series.items()]
    text = table([f"Update-reuse, RSA-2048, n={runs}", "median ms", "p90 ms"], rows)
    others = []
    for algorithm in ALGORITHMS:
        more = series if algorithm == "RSA-2048" else reuse_series(h, 20, algorithm)
        others.append(
            [
                algorithm,
                len(more[COMPUTE]),
                ms(median(more[TOTAL])),
                ms(median(more[COMPUTE])),
                ms(p90(more[COMPUTE])),
                ms(median(more[PARSE])),
            ]
        )
    text += "\n\n" + table(
        ["Update-reuse per KeyAlgorithm", "n", "total ms", "compute ms", "compute p90", "parse ms"],
        others,
    )
    return text, {name: median(v) for name, v in series.items()}


def create_latency(h: Harness, algorithm: str, runs: int) -> list[tuple[float, float]]:
    """(total, key generation) per Create on an empty store."""
    samples = []
    for _ in range(runs):
        samples.append(create_once(h, algorithm))
    return samples


def create_once(h: Harness, algorithm: str) -> tuple[float, float]:
    props = {"Rack": new_rack(), "KeyAlgorithm": algorithm}
    body, total = h.invoke("Create", props)
    assert body["Data"]["Action"] == "created"
    return total, h.timers.spent["keygen"]


def create_table(samples: dict[str, list[tuple[float, float]]]) -> tuple[str, dict[str, Any]]:
    """The Create table per KeyAlgorithm from (total, key generation) samples, and its figures."""
    rows = []
    result: dict[str, Any] = {}
    for algorithm, pairs in samples.items():
        totals = [t for t, _ in pairs]
        keygen = [k for _, k in pairs]
        share = median([k / t for t, k in pairs])
        rows.append(
            [
                algorithm,
                len(pairs),
                ms(median(totals)),
                ms(p90(totals)),
                ms(median(keygen)),
                f"{share * 100:.0f} %",
            ]
        )
        result[algorithm] = {"median": median(totals), "keygen_share": share}
    text = table(
        ["Create (empty store)", "n", "median ms", "p90 ms", "keygen median ms", "keygen share"],
        rows,
    )
    return text, result
