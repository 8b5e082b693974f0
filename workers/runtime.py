"""The model, SAE and feature atlas of this process, loaded on first use and kept.

Loaded lazily inside the worker child (never in the Celery parent before fork, never in
`worker_process_init`, which is killed after 4 s), once per process id.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from diagnostics.atlas.store import FeatureAtlas
from diagnostics.language_model import LanguageModel
from diagnostics.sae.modules import SparseAutoencoder
from diagnostics.trace.tracer import Tracer, make_tracer
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    lm: LanguageModel
    sae: SparseAutoencoder
    atlas: FeatureAtlas | None  # passed to diagnose as is
    sae_id: str
    tracer: Tracer | None = None  # traces jobs with options.trace (loads its set on first use)


_lock = threading.Lock()
_cached: tuple[int, Runtime] | None = None


def sae_identity(settings: Settings, sae: SparseAutoencoder) -> str:
    """settings.sae_id, else the SAE's own id, else its directory name (or 'default')."""
    if settings.sae_id:
        return settings.sae_id
    own = sae.cfg.metadata.extra.get("sae_id") if sae.cfg.metadata.extra else None
    return own or ("default" if settings.sae == "default" else Path(settings.sae).name)


def load_runtime(settings: Settings) -> Runtime:
    """Load the model, the SAE and (if there is one for this SAE) the atlas; a corrupt atlas
    is left out with a warning, one built for another SAE is an error when DRIFTSCOPE_ATLAS names
    it."""
    import torch

    from diagnostics.atlas.store import AtlasCorrupt, AtlasError
    from diagnostics.model_loading import load_model
    from diagnostics.sae.io import load_sae

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    lm = load_model(settings.model, device=settings.device)
    sae = load_sae(settings.sae, device=str(lm.device))
    atlas = None
    try:
        atlas = FeatureAtlas.for_sae(sae, settings.atlas_dir)
    except AtlasCorrupt as err:  # diagnoses still run: without labels, and the log says why
        log.warning("the feature atlas cannot be read, diagnosing without labels: %s", err)
    except AtlasError as err:
        if settings.atlas:
            raise
        log.info("no feature atlas for %s (%s): reports will have no labels", settings.sae, err)
    return Runtime(
        lm=lm,
        sae=sae,
        atlas=atlas,
        sae_id=sae_identity(settings, sae),
        tracer=make_tracer(settings.transcoders, str(lm.device)),
    )


def get_runtime(settings: Settings | None = None) -> Runtime:
    """This process's runtime, loading it on the first call."""
    global _cached
    pid = os.getpid()
    with _lock:
        if _cached is None or _cached[0] != pid:
            _cached = (pid, load_runtime(settings or get_settings()))
        return _cached[1]
