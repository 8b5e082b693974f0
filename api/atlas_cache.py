"""The feature atlas for the API process (labels and statistics only: no model is loaded here)."""

from __future__ import annotations

import logging
from functools import lru_cache

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def load_atlas(atlas_dir: str):
    """The atlas at `atlas_dir` (an SAE directory or 'default'), or None when there is none."""
    from diagnostics.atlas.store import AtlasError, FeatureAtlas

    try:
        return FeatureAtlas.load(atlas_dir)
    except (AtlasError, OSError) as err:
        log.info("no feature atlas at %s: %s", atlas_dir, err)
        return None
