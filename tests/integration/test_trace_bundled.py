"""The Natalia problem traced on the shipped transcoders (diagnostics/assets/transcoders/...):
the verdict names the path in words, with the interventions and the null behind it. Minutes on
a CPU; skipped, with the reason, while the set is not shipped (docs/transcoders.md)."""

from __future__ import annotations

import pytest

from diagnostics.diagnose import diagnose
from diagnostics.options import DiagnosisOptions
from diagnostics.sae import load_sae
from diagnostics.trace.config import TraceConfig
from diagnostics.trace.tracer import Tracer
from diagnostics.transcoders.io import read_config
from diagnostics.transcoders.shipped import resolve_transcoders_dir

NATALIA = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?"
)


SHIPPED = resolve_transcoders_dir("default")
pytestmark = pytest.mark.skipif(
    not (SHIPPED / "config.yaml").is_file(),
    reason="the transcoder set is not shipped yet: `make transcoders` trains it (docs/transcoders.md)",
)


@pytest.fixture(scope="module")
def traced(bundled_lm):
    shipped = SHIPPED
    read_config(shipped)
    tracer = Tracer(shipped, TraceConfig(max_feature_nodes=200, batch_size=8, null_draws=10))
    opts = DiagnosisOptions(trace=True, context=False)
    return diagnose(bundled_lm, load_sae("default"), NATALIA, "72", options=opts, tracer=tracer)


def test_natalia_trace_names_the_path_with_interventions_and_null(traced):
    report = traced
    assert not report.correct and report.divergence is not None
    t = report.trace
    assert t is not None and t.supernodes and t.null is not None and len(t.null.draws) == 10
    assert t.gap == pytest.approx(report.divergence.metric)
    # the prompt's words carry influence, placed on the prompt's own characters
    assert all(NATALIA[p.start : p.end] == p.token for p in t.prompt_influence)
    assert "Natalia" in "".join(p.token for p in t.prompt_influence)
    assert "attribution graph" in report.verdict and "the turn to" in report.verdict
    assert ("weak" in report.verdict) == (t.evidence == "weak")
    assert t.cost.n_tokens == report.divergence.position
    assert t.cost.cpu_s < 600 and t.cost.peak_rss_mb < 8_000
