"""What the report page draws of a trace: the graph as inline SVG (prompt tokens at the bottom,
layers up the side, supernodes as labelled boxes, edge widths by the summed |weight| between
them), the prompt and output coloured by influence, and the interventions against the null.
Geometry is computed here so the template only places shapes (no script, no CDN)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from api.pages.heatmap import display_text, heat_level
from diagnostics.atlas.transcoder_atlas import feature_id
from diagnostics.report import DriftReport
from diagnostics.trace.records import TokenInfluence, Trace

if TYPE_CHECKING:  # torch stays unimported here
    from diagnostics.trace.supernodes import LabelFn

COLUMN = 66.0  # px per shown position
ROW = 16.0  # px per layer
BOX_W, BOX_H = 62.0, 14.0
MARGIN_LEFT, MARGIN_TOP, TOKEN_BAND = 34.0, 28.0, 40.0
MAX_COLUMNS = 24  # positions shown: those with supernodes, then the most influential tokens
MAX_SUPERNODES = 30
SIDE_BY_SIDE = 3  # supernodes of one position and layer side by side; more stack upwards
GRAPH_MIN_HEIGHT = 240.0  # px of the layer area, however few layers


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    label: str  # shortened for the box
    title: str  # full label, layers, token, influence
    level: int  # heat level of its influence
    href: str = ""  # a supernode's seed feature page, /features/{layer}/{feature}


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    width: float
    sign: str  # 'pos' | 'neg' (the summed weight's sign)
    title: str


@dataclass(frozen=True)
class GraphSvg:
    width: float
    height: float
    boxes: list[Box]
    tokens: list[Box]  # embedding nodes at the bottom
    target: Box
    lines: list[Line]
    layer_ticks: list[tuple[float, str]]


@dataclass(frozen=True)
class Piece:
    text: str
    level: int  # 0 .. 8
    title: str


def influence_pieces(text: str, influences: list[TokenInfluence]) -> list[Piece]:
    """`text` cut at the tokens' spans, each token's piece with its influence heat level (the
    text between tokens, e.g. spaces the tokenizer folds, at level 0)."""
    scale = max((t.influence for t in influences), default=0.0)
    total = sum(t.influence for t in influences) or 1.0
    pieces, pos = [], 0
    for t in sorted(influences, key=lambda t: t.start):
        if t.start > pos:
            pieces.append(Piece(text[pos : t.start], 0, ""))
        if t.end > max(pos, t.start):
            start = max(pos, t.start)
            pieces.append(
                Piece(
                    text[start : t.end],
                    heat_level(t.influence, scale),
                    f"{t.influence / total:.1%} of the influence",
                )
            )
            pos = t.end
    if pos < len(text):
        pieces.append(Piece(text[pos:], 0, ""))
    return pieces


@dataclass(frozen=True)
class SupernodeName:
    label: str
    href: str  # its seed feature's page
    from_atlas: bool  # False: named by its feature ids


def supernode_names(trace: Trace, labels: LabelFn | None) -> list[SupernodeName]:
    """Each supernode's name: the atlas label stored with the trace; for one traced without an
    atlas, its seed feature's label in `labels` (the server's atlas of that set), else its ids."""
    out = []
    for s in trace.supernodes:
        seed = s.members[0]
        label = s.label if s.label_source == "atlas" or labels is None else None
        label = label or labels(seed.layer, seed.feature)  # type: ignore[misc]
        href = f"/features/{feature_id(seed.layer, seed.feature)}"
        out.append(SupernodeName(label or s.label, href, bool(label)))
    return out


def graph_svg(trace: Trace, tokens: dict[int, str], names: list[SupernodeName]) -> GraphSvg:
    """The pruned graph at supernode level; `tokens` maps a traced position to its text,
    `names` name the supernodes (`supernode_names`)."""
    shown = trace.supernodes[:MAX_SUPERNODES]
    embeds = {n.position: n for n in trace.nodes if n.kind == "embedding"}
    positions = sorted({s.position for s in shown})
    by_influence = sorted(embeds.values(), key=lambda n: -n.influence)
    for n in by_influence:
        if len(positions) >= MAX_COLUMNS:
            break
        if n.position not in positions and n.influence > 0:
            positions.append(n.position)
    target_pos = max(embeds, default=0)
    if target_pos not in positions:
        positions.append(target_pos)
    positions = sorted(positions)[-MAX_COLUMNS:]
    n_layers = 1 + max((n.layer or 0 for n in trace.nodes), default=0)
    row = max(ROW, GRAPH_MIN_HEIGHT / (n_layers + 1))
    # supernodes at the same position and (rounded) middle layer sit side by side
    slot_of, slots = {}, defaultdict(int)
    for k, s in enumerate(shown):
        key = (s.position, round((s.layers[0] + s.layers[1]) / 2))
        slot_of[k] = slots[key]
        slots[key] += 1
    span = {
        p: min(SIDE_BY_SIDE, max([1] + [n for (q, _), n in slots.items() if q == p]))
        for p in positions
    }
    column, x = {}, MARGIN_LEFT
    for p in positions:
        column[p] = x
        x += COLUMN * span[p]
    height = MARGIN_TOP + row * (n_layers + 1) + TOKEN_BAND
    width = x

    def y_layer(layer: float) -> float:  # layer -1: embeddings, n_layers: the target
        return MARGIN_TOP + row * (n_layers - 1 - layer) + row / 2

    scale = max((s.influence for s in shown), default=0.0)
    boxes, where = [], {}
    for k, s in enumerate(shown):
        if s.position not in column:
            continue
        across, up = slot_of[k] % SIDE_BY_SIDE, slot_of[k] // SIDE_BY_SIDE
        x0 = column[s.position] + 2 + COLUMN * across
        y0 = y_layer((s.layers[0] + s.layers[1]) / 2) - BOX_H / 2 - up * (BOX_H + 2)
        where[k] = (x0 + BOX_W / 2, y0 + BOX_H / 2)
        name = names[k]
        boxes.append(
            Box(x0, y0, _short(name.label, 10),
                f"{name.label} · layers {s.layers[0]}-{s.layers[1]} at "
                f"{tokens.get(s.position, '')!r} · {len(s.members)} features · influence "
                f"{s.influence:.3f} · seed feature {name.href.removeprefix('/features/')}",
                heat_level(s.influence, scale), name.href)
        )  # fmt: skip
    token_y = y_layer(-1) + row / 2
    tscale = max((n.influence for n in embeds.values()), default=0.0)
    token_boxes = []
    for p in positions:
        n = embeds.get(p)
        influence = n.influence if n else 0.0
        token_boxes.append(
            Box(column[p] + 2, token_y, _short(display_text(tokens.get(p, "")), 10),
                f"position {p}: {tokens.get(p, '')!r} · influence {influence:.3f}",
                heat_level(influence, tscale))
        )  # fmt: skip
    target = Box(column[target_pos] + 2, MARGIN_TOP - 22, _short(trace.target, 10), trace.target, 0)
    ends = {("embedding", p): (column[p] + 2 + BOX_W / 2, token_y) for p in positions}
    ends[("logit", 0)] = (target.x + BOX_W / 2, target.y + BOX_H)
    lines = _lines(trace, where, ends)
    every = 1 if n_layers <= 8 else 5
    ticks = [(y_layer(layer) + 4, f"L{layer}") for layer in range(0, n_layers, every)]
    return GraphSvg(width, height, boxes, token_boxes, target, lines, ticks)


def _lines(trace: Trace, where: dict, ends: dict) -> list[Line]:
    """Edges summed between shown elements (supernodes, tokens, the target); errors left out."""
    kind = {n.node_id: n for n in trace.nodes}
    sums: dict[tuple, float] = defaultdict(float)

    def element(node_id: str):
        n = kind.get(node_id)
        if n is None:
            return None
        if n.kind == "feature" and n.supernode in where:
            return ("supernode", n.supernode)
        if n.kind == "embedding" and ("embedding", n.position) in ends:
            return ("embedding", n.position)
        if n.kind == "logit":
            return ("logit", 0)
        return None

    for e in trace.edges:
        a, b = element(e.source), element(e.target)
        if a is not None and b is not None and a != b:
            sums[(a, b)] += e.weight
    scale = max((abs(w) for w in sums.values()), default=0.0) or 1.0
    out = []
    for (a, b), w in sorted(sums.items(), key=lambda kv: abs(kv[1])):
        (x1, y1), (x2, y2) = _point(a, where, ends), _point(b, where, ends)
        out.append(Line(x1, y1, x2, y2, 0.5 + 5.5 * abs(w) / scale, "pos" if w > 0 else "neg",
                        f"direct effect {w:+.3f}"))  # fmt: skip
    return out


def _point(element, where, ends):
    return where[element[1]] if element[0] == "supernode" else ends[element]


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass(frozen=True)
class InterventionChart:
    """Bars of each intervention's gap change, the null's draws as dots on its own row."""

    width: float
    height: float
    zero_x: float
    rows: list[tuple[float, float, float, str, str]]  # (y, x, bar width, class, label)
    null: list[tuple[float, float, str]]  # (x, y, title)
    p90_x: float | None
    ticks: list[tuple[float, str]]


def intervention_chart(trace: Trace, width: float = 360.0) -> InterventionChart:
    """A compact chart that fits 390 px: one row per intervention, one for the null."""
    rows_in = [
        (
            f"{i.mode} " + "+".join(f"#{k + 1}" for k in i.supernodes),
            i.gap_change,
            ("flipped" if i.flipped else "") + (" fixed" if i.fixed else ""),
        )
        for i in trace.interventions
    ]
    null = [d.gap_change for d in trace.null.draws] if trace.null else []
    values = [0.0, *(v for _, v, _ in rows_in), *null]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    low, high = low - 0.05 * span, high + 0.05 * span
    left, right = 96.0, 8.0

    def x(v: float) -> float:
        return left + (v - low) / (high - low) * (width - left - right)

    rows = []
    for k, (name, v, flags) in enumerate(rows_in):
        y = 8 + 16 * k
        x0, x1 = sorted((x(0.0), x(v)))
        rows.append(
            (y, x0, max(1.0, x1 - x0), "pos" if v > 0 else "neg", f"{name} {flags}".strip())
        )
    null_y = 8 + 16 * len(rows_in) + 6
    dots = [(x(v), null_y + ((k * 7) % 5 - 2) * 2.0, f"null draw {k + 1}: {v:+.3f}")
            for k, v in enumerate(null)]  # fmt: skip
    p90 = trace.null.p90_gap_change if trace.null else None
    height = null_y + 26
    ticks = [
        (x(low + k * (high - low) / 3), f"{low + k * (high - low) / 3:+.2g}") for k in range(4)
    ]
    return InterventionChart(
        width, height, x(0.0), rows, dots, x(p90) if p90 is not None else None, ticks
    )


@dataclass(frozen=True)
class TracePage:
    prompt: list[Piece]
    output: list[Piece]
    graph: GraphSvg
    chart: InterventionChart
    names: list[SupernodeName]  # one per supernode of the trace


def trace_page(report: DriftReport, labels: LabelFn | None = None) -> TracePage:
    """Everything trace.html draws (call only when the report has a trace); `labels` names
    the nodes of a trace made without an atlas (the server's atlas of the same set)."""
    t = report.trace
    assert t is not None
    tokens = {tok.index: tok.token for tok in report.model_path.tokens}
    names = supernode_names(t, labels)
    return TracePage(
        prompt=influence_pieces(report.prompt, t.prompt_influence),
        output=influence_pieces(
            report.model_path.text[: max((o.end for o in t.output_influence), default=0)],
            t.output_influence,
        ),
        graph=graph_svg(t, tokens, names),
        chart=intervention_chart(t),
        names=names,
    )
