"""The targets: the figures the project promises, and whether a run of ``make bench`` meets them.

A target is judged on its conservative figure over every repeated run (the highest of a
cost, the lowest of a gain), never on one lucky run; the sentence that sums the table up
is written from the same numbers, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from report import median, table


@dataclass(frozen=True)
class Target:
    """A figure the project promises, judged on every run's value, never on a lucky one."""

    name: str
    wanted: str
    unit: str
    worst: Callable[[list[float]], float]  # the conservative figure: max of a cost, min of a gain
    met: Callable[[float], bool]
    value: Callable[[dict[str, Any]], float]  # one run's figure from its results


TARGETS = [
    Target("Update-reuse SSM reads", "1", "", max, lambda v: v == 1,
           lambda r: r["calls"]["Update, reuse"]["reads"]),
    Target("Update-reuse SSM writes", "0", "", max, lambda v: v == 0,
           lambda r: r["calls"]["Update, reuse"]["writes"]),
    Target("Update-reuse handler compute, RSA-2048 (median of the run)", "≤ 10", "ms", max,
           lambda v: v <= 10, lambda r: r["reuse"]["handler compute (total - SSM)"] * 1000),
    Target("OpenSSL recipe / our Create, RSA-2048 (medians of the run)", "≥ 4", "x", min,
           lambda v: v >= 4, lambda r: r["create"]["openssl_ratio"]),
    Target("cold-start overhead over bare boto3 + x509", "≤ 20", "ms", max,
           lambda v: v <= 20, lambda r: r["cold"]["overhead"] * 1000),
    # Below the floor means the import skipped part of what every request needs (boto3 made
    # lazy, say): the first request pays it instead, and the figure above measures nothing.
    Target("cold-start overhead is not below the floor", "≥ 0", "ms", min,
           lambda v: v >= 0, lambda r: r["cold"]["overhead"] * 1000),
    Target("boto3 clients created at import", "0", "", max, lambda v: v == 0,
           lambda r: r["cold"]["clients"]),
    Target("peak RSS, Create RSA-4096, handler without moto", "≤ 100", "MB", max,
           lambda v: v <= 100, lambda r: r["memory"]["RSA-4096 no moto"]),
]  # fmt: skip


def targets(runs: list[dict[str, Any]]) -> str:
    """The targets table and the sentence that sums it up, from the same numbers."""
    rows: list[list[Any]] = []
    missed: list[str] = []
    for target in TARGETS:
        values = [target.value(run) for run in runs]
        worst = target.worst(values)
        ok = target.met(worst)
        if not ok:
            missed.append(f"{target.name} ({worst:g}{target.unit}, wanted {target.wanted})")

        def shown(value: float, unit: str = target.unit) -> str:
            return f"{value:.1f}{unit}" if unit else f"{value:g}"

        rows.append(
            [
                target.name,
                f"{target.wanted}{target.unit}",
                len(values),
                shown(min(values)),
                shown(median(values)),
                shown(max(values)),
                f"{'max' if target.worst is max else 'min'}: {shown(worst)}",
                "yes" if ok else "**no**",
            ]
        )
    text = table(["target", "wanted", "runs", "min", "median", "max", "judged on", "met"], rows)
    verdict = (
        f"**All {len(TARGETS)} targets are met** on the conservative figure of {len(runs)} runs."
        if not missed
        else f"**{len(TARGETS) - len(missed)} of {len(TARGETS)} targets are met** on the "
        f"conservative figure of {len(runs)} runs; not met: {'; '.join(missed)}."
    )
    return f"{verdict}\n\n{text}"
