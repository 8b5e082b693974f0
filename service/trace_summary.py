"""Supernodes that recur across an audit's traced failures, with how often intervening on them
flipped the wrong turn against the selection-matched null, per failure class.

Two supernodes of different failures are the same when they share an atlas label, or (without
one) the same most influential feature (layer and feature id: decoder cosine 1). The flip rate of
a recurring supernode is over the failures where it was among the top supernodes intervened on:
the share where zeroing it alone made the model take the corrected token; its null flip rate is
the mean flip rate of those failures' nulls (random attributed features, grouped and ranked the
same way, their top supernodes zeroed together)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlmodel import Session

from diagnostics.trace.records import Supernode, TraceIntervention
from service.models import Report

if TYPE_CHECKING:  # torch stays unimported here
    from diagnostics.trace.supernodes import LabelFn


def traced_failures(session: Session, audit_id: str) -> list[dict]:
    """The audit's wrong, traced reports: failure class, supernodes, interventions, null flip
    rate (the trace's nodes and edges are not read)."""
    r = Report.__table__.c
    trace = r.body["trace"]
    rows = session.execute(
        sa.select(
            r.id, r.failure_class, trace["supernodes"], trace["interventions"],
            trace["null"]["flip_rate"].as_float(), trace["transcoders"].as_string(),
        ).where(r.audit_id == audit_id, r.correct.is_(False))
    ).all()  # fmt: skip
    return [
        {
            "report_id": row[0],
            "failure_class": str(row[1]),
            "supernodes": [Supernode.model_validate(s) for s in row[2]],
            "interventions": [TraceIntervention.model_validate(i) for i in row[3] or []],
            "null_flip_rate": row[4],
            "transcoders": row[5],  # the set's scan id
        }
        for row in rows
        if row[2] is not None
    ]


def supernode_key(s: Supernode) -> str:
    """What makes two failures' supernodes the same: the atlas label, else the seed feature."""
    if s.label_source == "atlas":
        return f"label:{s.label}"
    seed = s.members[0]
    return f"feature:L{seed.layer}/F{seed.feature}"


def recurring_supernodes(
    failures: list[dict], *, labels: LabelFn | None = None, min_count: int = 2, top: int = 20
) -> list[dict]:
    """Supernodes found in at least `min_count` traced failures, most failures first, each
    {key, label, feature, failures, intervened, flip_rate, null_flip_rate, by_kind: {class:
    {failures, intervened, flip_rate, null_flip_rate}}} (rates None when nothing was measured).
    `feature` is the seed's `layer/feature` id; a supernode traced without an atlas label takes
    its seed's label in `labels` (an atlas of the same set) when there is one."""
    found: dict[str, list[tuple[dict, Supernode, bool | None]]] = defaultdict(list)
    for f in failures:
        zeroed = {i.supernodes[0]: i.flipped for i in f["interventions"]
                  if i.mode == "zero" and len(i.supernodes) == 1}  # fmt: skip
        seen = set()
        for k, s in enumerate(f["supernodes"]):
            key = supernode_key(s)
            if key in seen:
                continue
            seen.add(key)
            found[key].append((f, s, zeroed.get(k)))
    out = []
    for key, hits in found.items():
        if len({f["report_id"] for f, _, _ in hits}) < min_count:
            continue
        by_kind = defaultdict(list)
        for hit in hits:
            by_kind[hit[0]["failure_class"]].append(hit)
        first = hits[0][1]
        seed = first.members[0]
        label = first.label
        if first.label_source != "atlas" and labels is not None:
            label = labels(seed.layer, seed.feature) or label
        out.append(
            {"key": key, "label": label, "feature": f"{seed.layer}/{seed.feature}"}
            | _rates(hits)
            | {"by_kind": {kind: _rates(h) for kind, h in sorted(by_kind.items())}}
        )
    out.sort(key=lambda r: (-r["failures"], -(r["flip_rate"] or 0)))
    return out[:top]


def _rates(hits: list) -> dict:
    measured = [(f, flipped) for f, _, flipped in hits if flipped is not None]
    nulls = [f["null_flip_rate"] for f, _ in measured if f["null_flip_rate"] is not None]
    return {
        "failures": len(hits),
        "intervened": len(measured),
        "flip_rate": sum(flipped for _, flipped in measured) / len(measured) if measured else None,
        "null_flip_rate": sum(nulls) / len(nulls) if nulls else None,
    }
