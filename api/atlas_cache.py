"""The feature atlases for the API process: labels and statistics for the feature pages, and the
concept basis of audit summaries (decoder rows + descriptions); the atlas of the transcoder set
(`DRIFTSCOPE_TRANSCODERS`) names the nodes of attribution graphs. No model is loaded here; the SAE
is read once, to check the atlas belongs to it (FeatureAtlas.for_sae) and for its decoder; a
transcoder layer's atlas is read when first asked for, checked against that layer's decoder."""

from __future__ import annotations

import logging
from functools import lru_cache

from diagnostics.atlas.store import AtlasError, FeatureAtlas
from diagnostics.atlas.transcoder_atlas import TranscoderAtlas
from diagnostics.concepts import ConceptBasis
from diagnostics.errors import SaeFormatError
from diagnostics.sae import load_sae
from service.settings import Settings

log = logging.getLogger(__name__)


def atlas_of(settings: Settings) -> FeatureAtlas | None:
    """The atlas of the configured SAE, or None when there is none or it is not this SAE's."""
    return _load(settings.sae, settings.atlas_dir)[0]


def atlas_problem(settings: Settings) -> str | None:
    """Why the configured atlas is not used when it is there but cannot be read (corrupt, or
    another SAE's), for /readyz; None when it loaded or there is none."""
    return _load(settings.sae, settings.atlas_dir)[2]


def concept_basis_of(settings: Settings) -> ConceptBasis | None:
    """The configured SAE's concept basis (descriptions from its atlas when there is one), or
    None when the SAE cannot be read."""
    return _load(settings.sae, settings.atlas_dir)[1]


@lru_cache(maxsize=4)
def _load(sae: str, atlas_dir: str) -> tuple[FeatureAtlas | None, ConceptBasis | None, str | None]:
    """(atlas, concept basis, why the atlas is not used): read and checked once per process."""
    try:
        module = load_sae(sae)
    except (SaeFormatError, OSError) as err:
        log.warning("no SAE for the pages (%s): %s", sae, err)
        return None, None, None
    atlas, problem = None, None
    try:
        atlas = FeatureAtlas.for_sae(module, atlas_dir, missing_ok=True)
    except (AtlasError, OSError) as err:
        log.error("the feature atlas is not used, pages show no labels: %s", err)
        problem = str(err)
    return atlas, ConceptBasis.of(module, atlas), problem


def transcoder_atlas_of(settings: Settings) -> TranscoderAtlas | None:
    """The atlas of the configured transcoder set, or None when it has none (or it is unreadable:
    logged). Its layers may still be refused when read (AtlasError: another set's)."""
    return _load_transcoders(settings.transcoders)


def transcoder_labels(settings: Settings, scan: str):
    """(layer, feature) -> the atlas label of a node of a graph traced with the set `scan`, or
    None: only when the configured set's atlas describes that set; None without one."""
    atlas = transcoder_atlas_of(settings)
    if atlas is None or atlas.scan != scan:
        return None

    def label(layer: int, feature: int) -> str | None:
        try:
            return atlas.node_label(layer, feature)
        except AtlasError:  # built for another set: logged when the page loads the layer
            log.exception("a transcoder atlas layer is not used")
            return None

    return label


@lru_cache(maxsize=2)
def _load_transcoders(name: str) -> TranscoderAtlas | None:
    try:
        return TranscoderAtlas.load(name, missing_ok=True)
    except (AtlasError, OSError) as err:
        log.error("the transcoder atlas is not used, graph nodes show ids: %s", err)
        return None


def clear_cache() -> None:
    _load.cache_clear()
    _load_transcoders.cache_clear()
