"""The feature atlas for the API process: labels and statistics for the feature pages. No model
is loaded here; the SAE is read once to check the atlas belongs to it (FeatureAtlas.for_sae)."""

from __future__ import annotations

import logging
from functools import lru_cache

from diagnostics.atlas.store import AtlasError, FeatureAtlas
from diagnostics.errors import SaeFormatError
from diagnostics.sae import load_sae
from service.settings import Settings

log = logging.getLogger(__name__)


def atlas_of(settings: Settings) -> FeatureAtlas | None:
    """The atlas of the configured SAE, or None when there is none or it is not this SAE's."""
    return _load(settings.sae, settings.atlas_dir)


@lru_cache(maxsize=4)
def _load(sae: str, atlas_dir: str) -> FeatureAtlas | None:
    try:
        return FeatureAtlas.for_sae(load_sae(sae), atlas_dir)
    except (AtlasError, SaeFormatError, OSError) as err:
        log.warning("no feature atlas for the pages (%s): %s", atlas_dir, err)
        return None


clear_cache = _load.cache_clear
