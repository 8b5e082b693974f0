"""The page of a transcoder feature, `/features/{layer}/{feature}` (the id of an attribution
graph's node): its entry in the atlas of the configured transcoder set (`DRIFTSCOPE_TRANSCODERS`),
drawn by the feature page's template. Without an atlas, or for an id it does not have: 404."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.atlas_cache import transcoder_atlas_of
from api.deps import SettingsDep
from api.pages.auth import PageCaller
from api.pages.heatmap import context_cells
from api.pages.templating import render
from api.problem_details import Problem, not_found
from diagnostics.atlas.describe import element_rows
from diagnostics.atlas.store import AtlasError
from diagnostics.atlas.transcoder_atlas import TranscoderAtlas, feature_id

router = APIRouter(include_in_schema=False)


def no_transcoder_atlas(name: str) -> Problem:
    return Problem(
        404, "Not found",
        f"no transcoder atlas for the set {name!r}: build one with `driftscope features build "
        f"--transcoders {name}` (docs/transcoders.md)", "not-found",
    )  # fmt: skip


def usable_transcoder_atlas(settings) -> TranscoderAtlas:
    """The configured set's atlas, or the 404 that says how to build one."""
    atlas = transcoder_atlas_of(settings)
    if atlas is None:
        raise no_transcoder_atlas(settings.transcoders)
    return atlas


@router.get("/features/{layer:int}/{feature:int}")
def transcoder_feature_page(
    layer: int, feature: int, request: Request, settings: SettingsDep, caller: PageCaller
) -> Response:
    """A transcoder feature: label, scores, statistics, max-activating contexts, causal output
    test (when the atlas has one), full rule and decoder logit lens."""
    atlas = usable_transcoder_atlas(settings)
    fid = feature_id(layer, feature)
    if layer not in atlas.layers or not 0 <= feature < atlas.d_tc:
        raise not_found("transcoder feature", fid)
    try:
        entry = atlas.entry(layer, feature)
    except AtlasError as err:  # the atlas was built for another set, or a layer is unreadable
        raise Problem(404, "Not found", str(err), "not-found") from None
    output_test = atlas.layer(layer).meta.output_test
    return render(
        request,
        "feature.html",
        {
            "fid": fid,
            "transcoder": {"layer": layer, "feature": feature, "set": settings.transcoders},
            "entry": entry,
            "atlas_dir": str(atlas.path),
            "contexts": [(c, context_cells(c, entry.max_activation)) for c in entry.top_contexts],
            "rule_elements": element_rows(entry.rule),
            "clamp": output_test.get("clamp", ""),
            "rows": [],
            "count": 0,
            "offset": 0,
        },
    )
