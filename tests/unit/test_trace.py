"""The attribution graph of a failure on the tiny Llama with tiny trained skip transcoders:
circuit-tracer reads the saved set as it is, error terms make the replacement exact, the graph's
edges equal real (frozen) interventions, our interventions equal circuit-tracer's, and the
trace's records round-trip through the report."""

from __future__ import annotations

import json
import random

import pytest
import torch
from circuit_tracer.frontend.graph_models import Model as GraphModel
from typer.testing import CliRunner

from cli.main import app
from diagnostics.diagnose import diagnose
from diagnostics.options import DiagnosisOptions
from diagnostics.report import Divergence, DriftReport
from diagnostics.sae.io import save_sae
from diagnostics.trace.config import TraceConfig
from diagnostics.trace.graph import build_graph
from diagnostics.trace.interventions import feature_intervention
from diagnostics.trace.records import FeatureRef
from diagnostics.trace.replacement import load_replacement
from diagnostics.trace.run import FailureCase
from diagnostics.trace.token_influence import prompt_token_spans
from diagnostics.trace.tracer import Tracer
from diagnostics.transcoders.config import TranscoderTrainConfig
from diagnostics.transcoders.io import load_layer, read_config
from diagnostics.transcoders.trainer import train_transcoders
from tests.conftest import WORDS, make_firing_sae, make_tiny_lm

runner = CliRunner()
PROMPT = "how many clips did she sell in april and may ?"
MLP_GAIN = 50.0
"""The random tiny model's MLP outputs are ~1/50 of its embeddings, so a graph of it would be all
tokens; scaled up, its MLPs (and so the transcoders' features) carry part of the computation."""


def tiny_lm_with_mlps():
    lm = make_tiny_lm()
    with torch.no_grad():
        for layer in lm.decoder_layers:
            layer.mlp.down_proj.weight *= MLP_GAIN
    return lm


def train_tiny_set(lm, tmp_dir):
    rnd = random.Random(0)
    src = tmp_dir / "texts.jsonl"
    src.write_text(
        "".join(
            json.dumps({"text": " ".join(rnd.choice(WORDS) for _ in range(40))}) + "\n"
            for _ in range(400)
        )
    )
    cfg = TranscoderTrainConfig(
        sources=[str(src)], out_dir=str(tmp_dir / "tc"), d_transcoder=64, k=4, batch_size=128,
        max_tokens=128 * 60, ctx_len=32, windows_per_forward=8, model_dtype="float32",
        threshold_tokens=512,
    )  # fmt: skip
    return train_transcoders(cfg, lm, progress=False).set_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    lm = tiny_lm_with_mlps()
    set_dir = train_tiny_set(lm, tmp_path_factory.mktemp("tc"))
    return lm, set_dir, load_replacement(lm, set_dir)


def failure_case(lm, k: int = 3) -> FailureCase:
    """The model's greedy output on PROMPT, "wrong" at its k-th token where '7' was expected."""
    tok = lm.tokenizer
    pids = lm.prompt_ids(PROMPT)
    out = lm.generate_ids(pids, max_new_tokens=8)
    with torch.no_grad():
        logits = lm.model(torch.cat([pids, out])[None]).logits[0, len(pids) + k - 1]
    mt, et = int(out[k]), tok.convert_tokens_to_ids("7")
    divergence = Divergence(
        position=len(pids) + k, path_index=k, expected_token="7", expected_token_id=et,
        model_token=tok.decode([mt]), model_token_id=mt, logit_expected=float(logits[et]),
        logit_model=float(logits[mt]), metric=float(logits[et] - logits[mt]),
        prob_expected=0.0, prob_model=1.0,
    )  # fmt: skip
    return FailureCase(
        prompt=PROMPT, prompt_ids=pids, out_ids=out,
        output=tok.decode(out, skip_special_tokens=True), divergence=divergence,
        judge_fn=lambda text: "7" in text, stop=None, max_new_tokens=4,
    )  # fmt: skip


def traced_ids(case: FailureCase) -> torch.Tensor:
    return torch.cat([case.prompt_ids, case.out_ids[: case.divergence.path_index]])


def test_circuit_tracer_reads_the_saved_set_as_it_is(setup):
    lm, set_dir, rep = setup
    assert read_config(set_dir)["feature_input_hook"] == "mlp.hook_in"
    assert len(rep.transcoders) == lm.n_layers and rep.transcoders.skip_connection
    for layer in range(lm.n_layers):
        saved = load_layer(set_dir, layer)
        loaded = rep.transcoders[layer]
        for key in ("W_enc", "W_dec", "b_enc", "b_dec", "W_skip"):
            assert torch.equal(getattr(loaded, key).float(), saved[key]), key
        assert torch.equal(
            loaded.activation_function.threshold.float(), saved["activation_function.threshold"]
        )


def test_with_error_terms_the_replacement_reproduces_the_logits(setup):
    """Every MLP (after the first position, which circuit-tracer leaves out) replaced by its
    transcoder plus the error vector circuit-tracer computed gives the model's logits."""
    lm, _, rep = setup
    ids = traced_ids(failure_case(lm))
    ctx = rep.model.setup_attribution(ids)
    with torch.no_grad():
        want = lm.model(ids[None]).logits[0]
    assert torch.allclose(ctx.logits[0].float(), want, atol=1e-4)

    def replace(layer):
        def hook(module, inputs, output):
            out = output.clone()
            swapped = rep.transcoders[layer](inputs[0][0]) + ctx.error_vectors[layer]
            out[0, 1:] = swapped[1:]
            return out

        return hook

    handles = [lay.mlp.register_forward_hook(replace(i)) for i, lay in enumerate(lm.decoder_layers)]
    try:
        with torch.no_grad():
            got = lm.model(ids[None]).logits[0]
    finally:
        for h in handles:
            h.remove()
    assert torch.allclose(got, want, atol=1e-4)
    # and without the error terms it does not: the errors carry something
    assert float(ctx.error_vectors[:, 1:].norm()) > 1e-3


def test_edges_equal_frozen_interventions(setup):
    """circuit-tracer's own check: zero a feature with attention, norms and MLPs frozen
    (constrained to every layer) and read the change in each later feature's pre-activation and
    in the target; it is minus the graph's edge from that feature."""
    lm, _, rep = setup
    case = failure_case(lm)
    ids, d = traced_ids(case), case.divergence
    pg = build_graph(
        rep.model,
        ids,
        d.expected_token_id,
        d.model_token_id,
        "gap",
        TraceConfig(max_feature_nodes=10_000),
    )
    g = pg.graph
    n = pg.n_features
    assert n == len(g.active_features)  # the budget covers every active feature here
    strongest = g.adjacency_matrix[pg.target_index, :n].abs().argsort(descending=True)[:6]
    _, base = rep.model.get_activations(ids, apply_activation_function=False)
    with torch.no_grad():
        base_logits = lm.model(ids[None]).logits[0, -1]
    base_gap = float(base_logits[d.expected_token_id] - base_logits[d.model_token_id])
    checked = 0
    for node in strongest.tolist():
        layer, pos, feat = pg.feature(node)
        logits, acts = rep.model.feature_intervention(
            ids, [(layer, pos, feat, 0.0)], constrained_layers=range(lm.n_layers),
            apply_activation_function=False,
        )  # fmt: skip
        gap = float(logits[0, -1, d.expected_token_id] - logits[0, -1, d.model_token_id])
        assert gap - base_gap == pytest.approx(-float(g.adjacency_matrix[pg.target_index, node]),
                                               abs=1e-4)  # fmt: skip
        for target in range(n):
            t_layer, t_pos, t_feat = pg.feature(target)
            if t_layer <= layer:
                continue
            change = float(acts[t_layer, t_pos, t_feat] - base[t_layer, t_pos, t_feat])
            assert change == pytest.approx(-float(g.adjacency_matrix[target, node]), abs=1e-4)
            checked += 1
    assert checked > 10


def test_our_intervention_is_circuit_tracers_on_the_real_model(setup):
    lm, _, rep = setup
    case = failure_case(lm)
    ids = traced_ids(case)
    _, acts = rep.model.get_activations(ids)
    active = acts[:, 1:].nonzero()[:5] + torch.tensor([0, 1, 0])  # [5, 3] (layer, pos, feature)
    settings = [(FeatureRef(layer=int(a), position=int(b), feature=int(c)), 2.0 * k)
                for k, (a, b, c) in enumerate(active.tolist())]  # fmt: skip
    # unfrozen, circuit-tracer takes text only (it counts positions by tokenizing it)
    text = " ".join(lm.tokenizer.convert_ids_to_tokens(ids.tolist()))
    assert lm.tokenizer(text).input_ids == ids.tolist()
    want, _ = rep.model.feature_intervention(
        text, [(r.layer, r.position, r.feature, v) for r, v in settings], freeze_attention=False
    )
    with feature_intervention(lm, rep.transcoders, settings), torch.no_grad():
        got = lm.model(ids[None]).logits
    with torch.no_grad():
        plain = lm.model(ids[None]).logits
    assert not torch.allclose(got, plain, atol=1e-3)
    assert torch.allclose(got, want.float(), atol=1e-4)


def test_prompt_spans_leave_the_chat_template_out(setup):
    lm, _, _ = setup
    pids = lm.prompt_ids(PROMPT)
    spans = prompt_token_spans(lm.tokenizer, pids, PROMPT)
    words = [PROMPT[s:e] for s, e in (x for x in spans if x is not None)]
    assert words == PROMPT.split()
    assert spans[0] is None and spans[-1] is None  # <|im_start|> ... assistant
    raw = lm.prompt_ids(PROMPT, chat=False)
    assert [
        PROMPT[s:e] for s, e in filter(None, prompt_token_spans(lm.tokenizer, raw, PROMPT))
    ] == (PROMPT.split())


def test_a_traced_diagnosis_records_the_graph_and_round_trips(setup, tmp_path):
    """diagnose(..., options.trace) on a wrong answer: the trace's records hang together (prompt
    influences on the prompt's words, supernode members among the graph's nodes, interventions
    from the real gap, a null of the asked size) and survive the report's JSON."""
    lm, set_dir, _ = setup
    sae = make_firing_sae(lm, 64)
    tracer = Tracer(set_dir, TraceConfig(max_feature_nodes=64, batch_size=8, null_draws=6))
    opts = DiagnosisOptions(mode="exact", max_new_tokens=4, context=False, verify=False,
                            trace=True)  # fmt: skip
    report = diagnose(lm, sae, PROMPT, "7", options=opts, tracer=tracer)
    assert not report.correct and report.divergence is not None
    t = report.trace
    assert t is not None and t.transcoders == read_config(set_dir)["scan"]
    assert t.gap == pytest.approx(report.divergence.metric)
    assert t.node_threshold == 0.8 and t.edge_threshold == 0.98
    assert [PROMPT[p.start : p.end] for p in t.prompt_influence] == PROMPT.split()
    assert all(report.model_path.text[o.start : o.end] == o.token for o in t.output_influence)
    assert len(t.output_influence) <= report.divergence.path_index
    shares = [p.influence for p in t.prompt_influence + t.output_influence]
    assert all(x >= 0 for x in shares) and 0 < sum(shares) <= 1 + 1e-5
    features = {(n.layer, n.position, n.feature) for n in t.nodes if n.kind == "feature"}
    assert t.supernodes and all(
        (m.layer, m.position, m.feature) in features for s in t.supernodes for m in s.members
    )
    assert [s.influence for s in t.supernodes] == sorted(
        (s.influence for s in t.supernodes), reverse=True
    )
    assert all(s.label_source == "feature_id" and s.label.startswith("L") for s in t.supernodes)
    node_ids = {n.node_id for n in t.nodes}
    assert t.edges and all(e.source in node_ids and e.target in node_ids for e in t.edges)
    assert 0 <= t.replacement_score <= 1 and 0 <= t.completeness_score <= 1
    n_top = min(3, len(t.supernodes))
    assert len(t.interventions) == 2 * n_top + (2 if n_top > 1 else 0)
    for i in t.interventions:
        assert i.gap_before == pytest.approx(report.divergence.metric, abs=1e-4)
        assert i.gap_change == pytest.approx(i.gap_after - i.gap_before)
        assert i.fixed is not None and i.continuation is not None
    assert t.null is not None and len(t.null.draws) == 6 and t.evidence in ("supported", "weak")
    assert (
        t.cost.cpu_s > 0
        and t.cost.peak_rss_mb > 0
        and t.cost.n_tokens == (report.divergence.position)
    )
    again = DriftReport.model_validate_json(report.model_dump_json())
    assert again == report
    assert DriftReport.from_stored(json.loads(report.model_dump_json())) == report
    # the graph JSON circuit-tracer's viewer opens
    path = tracer.export_last(lm, tmp_path / "tiny.json")
    graph = GraphModel.model_validate_json(path.read_text())
    assert {n.node_id for n in graph.nodes} >= {n.node_id for n in t.nodes if n.kind != "error"}
    assert graph.metadata.prompt_tokens[0] == "<|im_start|>"
    listed = json.loads((tmp_path / "graph-metadata.json").read_text())["graphs"]
    assert [g["slug"] for g in listed] == ["tiny"]  # what circuit-tracer's local viewer lists


def test_cli_diagnose_trace_prints_the_path_and_exports_the_graph(setup, tmp_path):
    lm, set_dir, _ = setup
    lm.model.save_pretrained(tmp_path / "model")
    lm.tokenizer.save_pretrained(tmp_path / "model")
    save_sae(make_firing_sae(lm, 64), tmp_path / "sae")
    common = ["diagnose", PROMPT, "--expected", "7", "--mode", "exact", "--max-new-tokens", "4",
              "--model", str(tmp_path / "model"), "--sae", str(tmp_path / "sae"), "--trace"]  # fmt: skip
    graph = tmp_path / "graph.json"
    result = runner.invoke(
        app, [*common, "--transcoders", str(set_dir), "--graph-json", str(graph)]
    )
    assert result.exit_code == 0, result.output
    assert "attribution graph" in result.stdout and "the turn to" in result.stdout
    assert "zero #1: gap" in result.stdout and "null, 20 draws: median" in result.stdout
    assert GraphModel.model_validate_json(graph.read_text()).nodes
    missing = runner.invoke(app, [*common, "--transcoders", str(tmp_path / "nowhere")])
    assert missing.exit_code == 4 and "no transcoder set at" in missing.stderr


def test_the_null_draws_random_attributed_features_through_the_same_selection(setup):
    """Each draw holds as many random attributed features as the graph's supernodes kept, and
    zeroes its top supernodes; a fixed seed gives the same draws; the graph's own top supernodes
    are ranked by the same restricted influence the null uses."""
    from diagnostics.trace.null import selection_matched_null
    from diagnostics.trace.steps import Intervener, decoder_of, supernode_candidates
    from diagnostics.trace.supernodes import group_supernodes

    lm, _, rep = setup
    case = failure_case(lm)
    ids, d = traced_ids(case), case.divergence
    cfg = TraceConfig(max_feature_nodes=64, null_draws=8)
    pg = build_graph(rep.model, ids, d.expected_token_id, d.model_token_id, "gap", cfg)
    candidates = supernode_candidates(pg)
    kept = pg.node_mask[: pg.n_features]
    assert {c.node for c in candidates} <= set(kept.nonzero().flatten().tolist())
    groups = group_supernodes(candidates, decoder_of(rep.transcoders), layer_band=4,
                              min_cosine=0.3)  # fmt: skip
    intervener = Intervener(lm, rep.transcoders, case, ids)
    first = selection_matched_null(pg, groups, 3, intervener, cfg)
    again = selection_matched_null(pg, groups, 3, intervener, cfg)
    assert first == again and len(first) == 8
    n_kept = sum(len(g) for g in groups)
    assert all(0 <= draw.members <= n_kept for draw in first)
    assert any(draw.members > 0 and draw.gap_change != 0 for draw in first)


def test_a_sequence_past_the_token_limit_is_not_traced_and_the_report_says_so(setup):
    lm, set_dir, _ = setup
    tracer = Tracer(set_dir, TraceConfig(max_tokens=5))
    opts = DiagnosisOptions(mode="exact", max_new_tokens=4, context=False, verify=False,
                            trace=True)  # fmt: skip
    report = diagnose(lm, make_firing_sae(lm, 64), PROMPT, "7", options=opts, tracer=tracer)
    assert report.divergence is not None and report.trace is None
    assert any(w.startswith("not traced:") and "limit of 5" in w for w in report.warnings)
