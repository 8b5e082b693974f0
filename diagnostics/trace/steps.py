"""The graph's supernodes intervened on, one at a time and together, on the real model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from diagnostics.language_model import LanguageModel
from diagnostics.trace.config import TraceConfig
from diagnostics.trace.graph import PrunedGraph, restricted_influence
from diagnostics.trace.interventions import Setting, feature_intervention, gap_and_top
from diagnostics.trace.records import Supernode, TraceIntervention
from diagnostics.trace.supernodes import Candidate

if TYPE_CHECKING:
    from diagnostics.trace.run import FailureCase


def decoder_of(transcoders):
    """(layer, feature) -> that feature's decoder direction [d_model]."""
    return lambda layer, feature: transcoders._get_decoder_vectors(layer, torch.tensor([feature]))[
        0
    ]


def supernode_candidates(pg: PrunedGraph) -> list[Candidate]:
    """The feature nodes kept by pruning, with their influence in the graph restricted to them
    (graph.restricted_influence, as the null ranks its draws); those with none are left out."""
    kept = pg.node_mask[: pg.n_features].nonzero().flatten()
    influence = restricted_influence(pg, kept)
    out = []
    for node in kept[influence[kept] > 0].tolist():
        layer, pos, feat = pg.feature(node)
        out.append(Candidate(node, layer, pos, feat, float(influence[node]), pg.activation(node)))
    return out


@dataclass
class Intervener:
    """Runs the real model on the traced sequence with features set, from one baseline."""

    lm: LanguageModel
    transcoders: object  # circuit-tracer's TranscoderSet
    case: FailureCase
    ids: torch.Tensor  # [seq] prompt + output before the divergence
    gap_before: float = field(init=False)

    def __post_init__(self) -> None:
        d = self.case.divergence
        self.gap_before, _ = gap_and_top(self.lm, self.ids, d.expected_token_id, d.model_token_id)

    def gap(self, settings: list[Setting]) -> tuple[float, bool]:
        """The gap with `settings` on, and whether the corrected token is now the top one."""
        d = self.case.divergence
        with feature_intervention(self.lm, self.transcoders, settings):
            gap, top = gap_and_top(self.lm, self.ids, d.expected_token_id, d.model_token_id)
        return gap, top == d.expected_token_id

    def continuation(self, settings: list[Setting]) -> tuple[str, bool]:
        """The greedy continuation from the divergence with `settings` on, and whether the
        output (the model's text before the divergence + it) reaches the expected answer."""
        case = self.case
        prefix = self.lm.tokenizer.decode(
            case.out_ids[: case.divergence.path_index], skip_special_tokens=True
        )
        with feature_intervention(self.lm, self.transcoders, settings):
            new = self.lm.generate_ids(
                self.ids, max_new_tokens=case.max_new_tokens, stop=_after(prefix, case.stop)
            )
        text = self.lm.tokenizer.decode(new, skip_special_tokens=True)
        return text, bool(case.judge_fn(prefix + text))


def _after(prefix: str, stop):
    return None if stop is None else (lambda text: stop(prefix + text))


def settings_for(
    supernodes: list[Supernode], activations: dict[tuple[int, int, int], float], factor: float
) -> list[Setting]:
    """Every member of `supernodes` set to factor x its activation (factor 0: zeroed)."""
    return [
        (m, factor * activations[(m.layer, m.position, m.feature)])
        for s in supernodes
        for m in s.members
    ]


def top_interventions(
    intervener: Intervener,
    supernodes: list[Supernode],
    activations: dict[tuple[int, int, int], float],
    cfg: TraceConfig,
) -> list[TraceIntervention]:
    """Zero and steer each of the top supernodes alone, then all of them together."""
    top = list(range(min(cfg.top_supernodes, len(supernodes))))
    sets = [[k] for k in top] + ([top] if len(top) > 1 else [])
    out = []
    for chosen in sets:
        for mode, factor in (("zero", 0.0), ("steer", cfg.steer_factor)):
            settings = settings_for([supernodes[k] for k in chosen], activations, factor)
            gap, flipped = intervener.gap(settings)
            text, fixed = intervener.continuation(settings)
            out.append(
                TraceIntervention(
                    supernodes=chosen,
                    mode=mode,
                    gap_before=intervener.gap_before,
                    gap_after=gap,
                    gap_change=gap - intervener.gap_before,
                    flipped=flipped,
                    continuation=text,
                    fixed=fixed,
                )
            )
    return out
