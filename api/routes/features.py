"""GET /v1/features/{id}: the atlas entry of an SAE latent and the reports that flag it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.atlas_cache import atlas_of
from api.auth import CallerKey
from api.deps import SessionDep, SettingsDep
from api.problem_details import ITEM_PROBLEMS, not_found
from api.schemas import MAX_OFFSET, FeatureReports
from service.report_queries import ReportFilters, feature_stats, list_reports
from service.validation import INT32_MAX

router = APIRouter(prefix="/v1/features", tags=["features"])


@router.get("/{feature_id}", response_model=FeatureReports, responses=ITEM_PROBLEMS)
def get_feature(
    feature_id: Annotated[int, Path(ge=0, le=INT32_MAX)],
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerKey,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> FeatureReports:
    """Atlas entry (label, score, density, contexts, logit effects) and reports flagging it."""
    atlas = atlas_of(settings)
    entry = None
    if atlas is not None:
        if feature_id >= atlas.d_sae:
            raise not_found("feature", feature_id)
        entry = atlas.entry(feature_id).model_dump(mode="json")
    reports, _count = list_reports(
        session, ReportFilters(feature=feature_id), scope=caller.scope, limit=limit, offset=offset
    )
    n_reports, n_failures, fix_rate = feature_stats(session, feature_id, scope=caller.scope)
    return FeatureReports(
        id=feature_id,
        atlas=entry,
        n_reports=n_reports,
        n_failures=n_failures,
        fix_rate=fix_rate,
        reports=reports,
    )
