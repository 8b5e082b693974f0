"""`driftscope features build|show|search|steer|explain`: the feature atlas of an SAE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    SPLITS,
    HeldoutFractionOpt,
    ModelOpt,
    RawOpt,
    SaeOpt,
    SplitOpt,
    friendly_errors,
    load_lm,
    read_documents,
    sae_and_atlas,
)
from diagnostics.documents import HELDOUT_FRACTION

TranscoderAtlasOpt = Annotated[
    str | None,
    typer.Option(
        help="Read the atlas of a transcoder set instead of the SAE's: 'default' (shipped) or its "
        "directory (ids LAYER/FEATURE)."
    ),
]
OUTPUT_CONTEXTS = 256
"""Default of --output-contexts: diagnostics.atlas.token_change.N_CONTEXTS (not imported here, so
the CLI starts without torch; tests/unit/test_atlas_cli.py checks they agree)."""

features_app = typer.Typer(
    no_args_is_help=True, help="The feature atlas: build, show, search, steer, LLM labels."
)


def _source_specs(specs: list[str], split: str) -> list[tuple[Path, str]]:
    """`PATH` (read with --split) or `PATH:SPLIT` (its own split) as (path, split)."""
    parsed = []
    for spec in specs:
        path, _, own = spec.rpartition(":")
        parsed.append((Path(path), own) if own in SPLITS and path else (Path(spec), split))
    return parsed


@features_app.command("build")
@friendly_errors
def features_build(
    source: Annotated[
        list[str],
        typer.Option(
            "--source",
            "-s",
            help="Text file (JSONL/.txt); repeat. PATH:all / PATH:heldout overrides --split.",
        ),
    ],
    sae: SaeOpt = "default",
    model: ModelOpt = "bundled",
    split: SplitOpt = "heldout",
    heldout_fraction: HeldoutFractionOpt = HELDOUT_FRACTION,
    max_tokens: Annotated[int, typer.Option(min=100)] = 1_000_000,
    ctx_len: Annotated[int, typer.Option(min=16, max=8192)] = 256,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    n_contexts: Annotated[int, typer.Option(min=1, max=256)] = 16,
    model_dtype: Annotated[
        str, typer.Option(help="float32 or bfloat16 (faster on CPU).")
    ] = "bfloat16",
    output_contexts: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Held-out contexts of the causal output test (0 skips it). Default: "
            f"{OUTPUT_CONTEXTS} for an SAE, chosen to pass or fail a latent with confidence "
            "(docs/atlas.md); 0 for a transcoder set (hours per layer, docs/transcoders.md).",
        ),
    ] = None,
    transcoders: Annotated[
        str | None,
        typer.Option(
            help="Describe every layer of a transcoder set instead of the SAE, in one pass: "
            "'default' (shipped) or its directory. Saved to DIR/atlas/ (ids LAYER/FEATURE).",
        ),
    ] = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the build saves its progress (default: next to the atlas, "
            "atlas.build/); a rerun with the same settings resumes from it. Removed once the "
            "atlas is saved."
        ),
    ] = None,
) -> None:
    """Build the feature atlas of an SAE (SAE_DIR/atlas/) or of every layer of a transcoder set
    (DIR/atlas/) over held-out text. Stopped builds resume from their checkpoint."""
    import shutil

    if transcoders is not None:  # a missing set fails before the model is loaded
        from cli.common import require_transcoders

        require_transcoders(transcoders)
    lm = load_lm(model, model_dtype)
    # a transcoder set's sources are read round-robin, so a short build draws on every one
    documents = read_documents(
        _source_specs(source, split), heldout_fraction, interleave=transcoders is not None
    )
    common = dict(max_tokens=max_tokens, ctx_len=ctx_len, batch_size=batch_size,
                  n_contexts=n_contexts, sources=source, split=split)  # fmt: skip
    if transcoders is not None:
        from diagnostics.atlas.transcoder_atlas import TranscoderAtlas
        from diagnostics.atlas.transcoder_build import build_transcoder_atlas
        from diagnostics.transcoders.shipped import resolve_transcoders_dir

        set_dir = resolve_transcoders_dir(transcoders)
        checkpoint = checkpoint_dir or set_dir / "atlas.build"
        path = build_transcoder_atlas(
            lm, set_dir, documents, checkpoint_dir=checkpoint,
            output_contexts=output_contexts or 0, **common,
        )  # fmt: skip
        shutil.rmtree(checkpoint, ignore_errors=True)
        meta = TranscoderAtlas.load(set_dir).meta
        typer.echo(f"atlas of {len(meta['layers'])} layers x {meta['d_tc']} features over "
                   f"{meta['n_tokens']} tokens: {path}")  # fmt: skip
        for key, value in (meta["summary"] | meta["cost"]).items():
            typer.echo(f"  {key:<36} {value}")
        return
    from diagnostics.atlas import build_atlas
    from diagnostics.sae import load_sae
    from diagnostics.sae.io import resolve_sae_dir

    out_dir = resolve_sae_dir(sae)
    checkpoint = checkpoint_dir or Path(out_dir) / "atlas.build"
    atlas = build_atlas(
        lm, load_sae(out_dir), documents, checkpoint_dir=checkpoint,
        output_contexts=OUTPUT_CONTEXTS if output_contexts is None else output_contexts, **common,
    )  # fmt: skip
    path = atlas.save(out_dir)
    shutil.rmtree(checkpoint, ignore_errors=True)
    typer.echo(f"atlas of {atlas.d_sae} latents over {atlas.n_tokens} tokens: {path}")
    for key, value in atlas.meta.summary.items():
        typer.echo(f"  {key:<36} {value}")


def _marked(tokens: list[str], peak: int) -> str:
    from diagnostics.atlas.surface import show_token

    out = []
    for k, t in enumerate(tokens):
        text = t.replace("\n", "⏎")
        out.append(f"[[{show_token(t)}]]" if k == peak else text)
    return "".join(out)


@features_app.command("show")
@friendly_errors
def features_show(
    feature: Annotated[str, typer.Argument(help="Latent index; LAYER/FEATURE with --transcoders.")],
    sae: SaeOpt = "default",
    transcoders: TranscoderAtlasOpt = None,
    n_contexts: Annotated[int, typer.Option(min=0)] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full entry as JSON.")] = False,
) -> None:
    """Print a feature: its readable label, generic mark, scores, statistics, max-activating
    contexts, causal output test, full rule and decoder logit effects."""
    if transcoders is not None:
        from diagnostics.atlas.transcoder_atlas import TranscoderAtlas, parse_feature_id

        layer, index = parse_feature_id(feature)
        entry = TranscoderAtlas.load(transcoders).entry(layer, index)
        name = feature
    elif feature.isdigit():
        entry = sae_and_atlas(sae)[1].entry(int(feature))
        name = str(entry.id)
    else:
        raise ValueError(f"a latent index is a number, not {feature!r}")
    if as_json:
        typer.echo(entry.model_dump_json(indent=2))
        return
    flags = [n for n, on in (("dead", entry.is_dead), ("dense", entry.is_dense)) if on]
    flags += ["unigram"] if entry.is_unigram else []
    flags += [f"generic ({entry.generic_reason})"] if entry.is_generic else []

    def auroc(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    typer.echo(f"feature {name}: {entry.label or '(no readable pattern)'}  [{entry.label_source}]")
    if entry.detection_auroc is not None:
        typer.echo(
            f"  detection AUROC: description {auroc(entry.description_auroc)}, full rule "
            f"{auroc(entry.detection_auroc)} (random-label control "
            f"{auroc(entry.random_label_auroc)}; {entry.n_positive_contexts} matching vs "
            f"{entry.n_negative_contexts} hard-negative contexts)"
        )
    else:
        typer.echo("  label not scored (too few held-out matches)")
    if entry.llm_auroc is not None:
        typer.echo(f"  LLM label's triggers: detection AUROC {entry.llm_auroc:.3f}")
    if flags:
        typer.echo(f"  flags: {', '.join(flags)}")
    qs = ", ".join(f"{k} {v:.3g}" for k, v in entry.quantiles.items())
    typer.echo(
        f"  density {entry.density:.4%}  mean {entry.mean_activation:.3g}  "
        f"max {entry.max_activation:.3g}  ({qs})"
    )
    if entry.rule_text:
        typer.echo(
            f"  full rule (precision {entry.rule.precision:.2f}, coverage "
            f"{entry.rule.coverage:.2f}): {entry.rule_text}"
        )
    typer.echo("  max-activating contexts:")
    if entry.peaks_on_rule is not None and entry.peaks_on_rule < 0.5:
        typer.secho(
            f"    (only {entry.peaks_on_rule:.0%} of them peak on a rule token: the strongest "
            "firings are not what the label names)",
            fg="yellow",
        )
    for ctx in entry.top_contexts[:n_contexts]:
        typer.echo(f"    {ctx.activation:8.3f}  {_marked(ctx.tokens, ctx.peak_index)}")
    if entry.output is not None:
        test = entry.output
        shown = "  ".join(
            f"{t.token!r} {t.lift:+.4f}{'' if t.significant else ' (n.s.)'}" for t in test.tokens
        )
        verdict = "causal" if any(t.significant for t in test.tokens) else "not significant"
        threshold = "-" if test.threshold is None else f"{test.threshold:.4f}"
        typer.echo(
            f"  clamped, next-token lift over {test.n_contexts} contexts ({verdict}; a token "
            f"must exceed {threshold}, p = {test.p_value}): {shown}"
        )
    for name, effects in (
        ("decoder logit lens promotes", entry.promoted_tokens),
        ("suppresses", entry.suppressed_tokens),
    ):
        shown = "  ".join(f"{t.token!r} {t.value:+.2f}" for t in effects)
        typer.echo(f"  {name}: {shown}")


@features_app.command("search")
@friendly_errors
def features_search(
    text: Annotated[str | None, typer.Argument(help="Text the features should fire on.")] = None,
    versus: Annotated[
        str | None, typer.Option(help="Contrast text they should stay quiet on.")
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="Search labels for a keyword instead (no model run).")
    ] = None,
    sae: SaeOpt = "default",
    transcoders: TranscoderAtlasOpt = None,
    model: ModelOpt = "bundled",
    top: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Features that fire on TEXT (minus on --versus), or whose label matches --label (with
    --transcoders: over every layer of a transcoder set's atlas)."""
    from diagnostics.atlas import search_text

    if label is not None:
        if transcoders is not None:
            from diagnostics.atlas.transcoder_atlas import TranscoderAtlas, feature_id

            tc_atlas = TranscoderAtlas.load(transcoders)
            found = [
                (feature_id(layer, i), tc_atlas.layer(layer), i)
                for layer, i in tc_atlas.search_label(label)[:top]
            ]
        else:
            atlas = sae_and_atlas(sae)[1]
            found = [(i, atlas, i) for i in atlas.search_label(label)[:top]]
        rows = [_label_row(fid, atlas, i) for fid, atlas, i in found]
        if as_json:
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        for row in rows:
            auroc = (
                "  -  " if row["description_auroc"] is None else f"{row['description_auroc']:.3f}"
            )
            generic = "  [generic]" if row["generic"] else ""
            typer.echo(f"{row['id']:>7}  {auroc}  {row['label']}{generic}")
        return
    if transcoders is not None:
        raise ValueError("--transcoders searches labels only: give --label KEYWORD")
    if not text:
        raise ValueError("give TEXT to search by activation, or --label KEYWORD")
    sae_module, atlas = sae_and_atlas(sae, or_warn="showing unlabelled features")
    lm = load_lm(model)
    hits = search_text(lm, sae_module, text, versus=versus, top=top, atlas=atlas)
    if as_json:
        typer.echo(json.dumps([h.model_dump() for h in hits], indent=2, ensure_ascii=False))
        return
    for h in hits:
        vs = "" if h.versus_activation is None else f" vs {h.versus_activation:.3f}"
        typer.echo(
            f"{h.id:>7}  {h.score:+.3f}  act {h.activation:.3f}{vs}  @{h.peak_token!r}  "
            f"{h.label or ''}"
        )


def _label_row(fid: int | str, atlas, i: int) -> dict:
    score = float(atlas.arrays["description_auroc"][i])
    return {
        "id": fid,
        "label": atlas.label(i),
        "description": atlas.description(i),
        "description_auroc": None if score != score else round(score, 4),  # NaN: unscored
        "generic": atlas.generic_reason(i) or None,
    }


def _parse_clamps(specs: list[str]) -> dict[int, float]:
    clamps = {}
    for spec in specs:
        fid, sep, mult = spec.partition("=")
        try:
            if not sep:
                raise ValueError
            clamps[int(fid)] = float(mult)
        except ValueError:
            raise ValueError(f"--feature expects ID=MULTIPLE (e.g. 4121=8), not {spec!r}") from None
    if not clamps:
        raise ValueError("give at least one --feature ID=MULTIPLE")
    return clamps


@features_app.command("steer")
@friendly_errors
def features_steer(
    prompt: Annotated[str, typer.Argument(help="The prompt text.")],
    feature: Annotated[
        list[str],
        typer.Option(
            "--feature", "-f", help="ID=MULTIPLE of its max activation (negative suppresses)."
        ),
    ],
    concept: Annotated[
        list[str] | None,
        typer.Option(help="Words whose next-token probability to measure with and without."),
    ] = None,
    sae: SaeOpt = "default",
    model: ModelOpt = "bundled",
    max_new_tokens: Annotated[int, typer.Option(min=1, max=1024)] = 40,
    raw: RawOpt = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Generate with features clamped (error term kept), next to the unsteered output."""
    from diagnostics.steering import steer

    clamps = _parse_clamps(feature)
    sae_module, atlas = sae_and_atlas(sae, or_warn="clamps are absolute activations")
    lm = load_lm(model)
    result = steer(
        lm,
        sae_module,
        prompt,
        clamps,
        atlas,
        max_new_tokens=max_new_tokens,
        chat=not raw,
        concept=concept or None,
    )
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return
    for i, mult in result.clamps.items():
        label = result.labels.get(i, "")
        typer.echo(f"clamp feature {i} to {mult:+g}x max = {result.values[i]:.3f}  {label}")
    typer.echo(f"--- unsteered ---\n{result.baseline_text}")
    typer.echo(f"--- steered ---\n{result.steered_text}")
    if result.concept is not None:
        c = result.concept
        typer.echo(
            f"p(next token in {c.tokens}), mean over {c.positions} positions of the unsteered "
            f"output: {c.p_baseline:.4g} -> {c.p_steered:.4g} (x{c.ratio:.3g})"
        )


@features_app.command("explain")
@friendly_errors
def features_explain(
    sae: SaeOpt = "default",
    model: ModelOpt = "bundled",
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="Features to relabel (repeat).")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, help="Without --id: relabel the N best-scored live features.")
    ] = 100,
) -> None:
    """Relabel with the LLM configured by DRIFTSCOPE_LLM_URL (OpenAI-compatible) and score the
    LLM labels by the detection AUROC of the offline descriptions, on the same held-out text."""
    import numpy as np
    from tqdm.auto import tqdm

    from diagnostics.atlas.explainer_llm import LlmExplainer, relabel, score_llm_labels
    from diagnostics.sae.io import resolve_sae_dir

    explainer = LlmExplainer.from_env()
    if explainer is None:
        raise ValueError("no LLM configured: set DRIFTSCOPE_LLM_URL (and DRIFTSCOPE_LLM_MODEL)")
    sae_module, atlas = sae_and_atlas(sae)
    if not ids:
        score = np.nan_to_num(atlas.arrays["description_auroc"], nan=-1.0)
        order = np.argsort(-score, kind="stable")
        ids = [int(i) for i in order if atlas.live[i]][:limit]
    answers = relabel(atlas, explainer, tqdm(ids, desc="LLM labels", unit="feat"))
    llm = score_llm_labels(load_lm(model), sae_module, atlas, answers)
    atlas.save(resolve_sae_dir(sae))
    done = np.array(sorted(answers), dtype=np.int64)
    both = done[~np.isnan(llm[done]) & ~np.isnan(atlas.arrays["description_auroc"][done])]
    typer.echo(f"relabelled {len(answers)} features with {explainer.model}")
    if len(both):
        typer.echo(
            f"median detection AUROC on {len(both)} features scored both ways: LLM triggers "
            f"{np.median(llm[both]):.3f}, offline descriptions "
            f"{np.median(atlas.arrays['description_auroc'][both]):.3f}"
        )
