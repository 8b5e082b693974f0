"""A corrupt atlas (any of its three files truncated) is found when it is loaded, once: the pages
and summaries go without labels instead of answering 500, /readyz says why, and the worker
runtime diagnoses without it (with a warning) instead of failing every job."""

from __future__ import annotations

import random
import shutil

import pytest

from diagnostics.atlas import AtlasCorrupt, FeatureAtlas
from diagnostics.sae import load_sae
from service.db import session_scope
from service.report_store import store_report
from service.submissions import create_job
from tests.service.conftest import key_id
from tests.service.factories import synthetic_report
from tests.service.test_atlas_refused import sae_dirs, use_sae  # noqa: F401 (fixtures)
from workers.runtime import load_runtime

FILES = ["atlas.json", "arrays.safetensors", "rules.json"]


@pytest.fixture(params=FILES)
def corrupt_sae(request, sae_dirs, tmp_path) -> str:  # noqa: F811
    """The service's SAE beside its own atlas with one file cut to half its length."""
    target = tmp_path / "sae"
    shutil.copytree(sae_dirs["own"], target)
    file = target / "atlas" / request.param
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    return str(target)


def test_loading_a_corrupt_atlas_says_so(corrupt_sae):
    with pytest.raises(AtlasCorrupt, match="corrupt"):
        FeatureAtlas.for_sae(load_sae(corrupt_sae), corrupt_sae)


def test_a_short_atlas_is_refused_by_validation(sae_dirs, tmp_path):  # noqa: F811
    import json

    target = tmp_path / "sae"
    shutil.copytree(sae_dirs["own"], target)
    doc_file = target / "atlas" / "atlas.json"
    doc = json.loads(doc_file.read_text())
    doc["labels"] = doc["labels"][:-1]
    doc_file.write_text(json.dumps(doc))
    with pytest.raises(AtlasCorrupt, match="labels"):
        FeatureAtlas.for_sae(load_sae(target), target)


def test_the_runtime_diagnoses_without_a_corrupt_atlas(service_env, corrupt_sae, use_sae, caplog):  # noqa: F811
    assert load_runtime(use_sae(corrupt_sae)).atlas is None
    assert "cannot be read" in caplog.text
    # named explicitly it is still left out, with the warning, rather than failing every job
    assert load_runtime(use_sae(corrupt_sae, atlas=corrupt_sae)).atlas is None


def test_pages_and_readyz_degrade(client, api_key, corrupt_sae, use_sae, sae_dirs):  # noqa: F811
    use_sae(sae_dirs["own"])
    assert client.get("/readyz").json()["atlas"] == "ok"  # the control
    use_sae(corrupt_sae)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert "corrupt" in ready.json()["atlas"]
    with session_scope() as session:
        from diagnostics.options import DiagnosisOptions
        from service.job_payloads import DiagnosisPayload

        owner = key_id(api_key)
        job = create_job(
            session, DiagnosisPayload(prompt="p", expected="1", options=DiagnosisOptions()), owner
        )
        report_id, _ = store_report(
            session,
            synthetic_report(random.Random(1), correct=False, flagged=[3, 4]),
            job.id,
            None,
            owner,
        )
    assert client.get(f"/reports/{report_id}").status_code == 200
    assert client.get("/features/3").status_code == 200  # flagged in the report: shown, unlabelled
    assert client.get("/features").status_code == 200
    assert client.get("/v1/features/3").json()["atlas"] is None
