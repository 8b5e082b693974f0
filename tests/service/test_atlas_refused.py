"""An atlas built for another SAE is never used: the worker runtime goes without it (or refuses to
start when DRIFTSCOPE_ATLAS names it), and the API and the feature pages show no labels from it.
The CLI's side is in tests/unit/test_atlas_cli.py."""

from __future__ import annotations

import shutil

import pytest

from api import atlas_cache
from diagnostics.atlas import AtlasError, build_atlas
from diagnostics.sae import load_sae
from service.settings import get_settings
from tests.conftest import make_firing_sae, make_tiny_lm
from tests.unit.test_atlas_build import make_corpus
from workers.runtime import load_runtime


def _atlas_for(sae, directory) -> None:
    build_atlas(
        make_tiny_lm(), sae, make_corpus(40), max_tokens=1_500, ctx_len=32, batch_size=8,
        n_contexts=2, score_context_len=8, progress=False,
    ).save(directory)  # fmt: skip


@pytest.fixture(scope="module")
def sae_dirs(runtime_dirs, tmp_path_factory):
    """The service's SAE twice: beside its own atlas, and beside another SAE's atlas."""
    root = tmp_path_factory.mktemp("atlases")
    own, other = root / "own", root / "other"
    shutil.copytree(runtime_dirs["sae"], own)
    shutil.copytree(runtime_dirs["sae"], other)
    _atlas_for(load_sae(own), own)
    _atlas_for(make_firing_sae(make_tiny_lm(), 128, seed=11), other)
    return {"own": str(own), "other": str(other)}


@pytest.fixture
def use_sae(monkeypatch):
    def use(sae_dir: str, atlas: str | None = None):
        monkeypatch.setenv("DRIFTSCOPE_SAE", sae_dir)
        if atlas is None:
            monkeypatch.delenv("DRIFTSCOPE_ATLAS", raising=False)
        else:
            monkeypatch.setenv("DRIFTSCOPE_ATLAS", atlas)
        get_settings.cache_clear()
        atlas_cache.clear_cache()
        return get_settings()

    yield use
    atlas_cache.clear_cache()


def test_the_worker_runtime_refuses_another_saes_atlas(service_env, sae_dirs, use_sae):
    assert load_runtime(use_sae(sae_dirs["own"])).atlas is not None  # the control: it loads
    assert load_runtime(use_sae(sae_dirs["other"])).atlas is None
    with pytest.raises(AtlasError, match="another SAE"):
        load_runtime(use_sae(sae_dirs["own"], atlas=sae_dirs["other"]))


def test_the_api_and_the_pages_refuse_another_saes_atlas(client, sae_dirs, use_sae):
    use_sae(sae_dirs["own"])
    assert client.get("/v1/features/3").json()["atlas"]["id"] == 3  # the control: it is shown
    page = client.get("/features/3")
    assert page.status_code == 200 and "max-activating" in page.text.lower()

    use_sae(sae_dirs["other"])
    assert client.get("/v1/features/3").json()["atlas"] is None
    assert client.get("/features/3").status_code == 404  # no atlas entry and no report
