"""Integration fixtures: the real bundled SmolLM2-135M-Instruct (de-quantized once, then cached)."""

from __future__ import annotations

import pytest

from diagnostics.language_model import LanguageModel
from diagnostics.model_loading import load_model


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def bundled_lm() -> LanguageModel:
    return load_model()
