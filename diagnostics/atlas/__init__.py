"""The feature atlas: per-latent statistics, max-activating contexts, scored labels and short
descriptions, generic marks, the causal output test and logit effects.

Built once per SAE over held-out text (`build_atlas`), stored next to the SAE in `<sae_dir>/atlas/`
and loaded in milliseconds, checked to belong to its SAE (`FeatureAtlas.for_sae`).
"""

from diagnostics.atlas.build import build_atlas
from diagnostics.atlas.records import (
    AtlasMeta,
    ContextExample,
    FeatureEntry,
    LabelRule,
    OutputTest,
    TokenLift,
    TokenValue,
)
from diagnostics.atlas.search import FeatureHit, search_text
from diagnostics.atlas.store import ATLAS_VERSION, AtlasCorrupt, AtlasError, FeatureAtlas

__all__ = [
    "ATLAS_VERSION",
    "AtlasCorrupt",
    "AtlasError",
    "AtlasMeta",
    "ContextExample",
    "FeatureAtlas",
    "FeatureEntry",
    "FeatureHit",
    "LabelRule",
    "OutputTest",
    "TokenLift",
    "TokenValue",
    "build_atlas",
    "search_text",
]
