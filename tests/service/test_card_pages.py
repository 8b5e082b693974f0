"""What the report and audit pages show of named latents and findings (over HTTP, no browser):
each flagged latent's card and what its numbers mean; an audit led by its first errors and
responsible spans, then only the concepts that beat the null."""

from __future__ import annotations

import random
import re
from html import unescape

from sqlmodel import select

from diagnostics.feature_card import CardContext, FeatureCard
from diagnostics.options import DiagnosisOptions
from diagnostics.report import ContextAttribution, FirstError, SpanEffect
from service.datasets import ProblemItem
from service.db import session_scope
from service.models import ApiKey
from service.report_store import store_report
from service.submissions import create_audit
from tests.service.conftest import FAST_OPTIONS
from tests.service.factories import synthetic_report

CTX = CardContext(before="Multiply the area ", peak="by", after=" the stroke", activation=32.7)


def _owner(session) -> int:
    return session.exec(select(ApiKey.id).where(ApiKey.name == "tests")).first()


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_the_report_page_shows_each_flagged_latents_card_and_explains_its_numbers(client):
    report = synthetic_report(random.Random(2), correct=False, flagged=[11, 12])
    first, second = report.flagged
    first.card = FeatureCard(
        feature=11, description='"multiply"', label='"multiply"', label_score=0.93, contexts=[CTX]
    )
    first.attribution, first.activation_failing, first.activation_expected = 0.97, 35.6, 35.6
    first.atlas_mean_activation = 8.9
    second.generic, second.generic_reason = True, "dense: fires on 9.0% of tokens"
    second.card = FeatureCard(
        feature=12, description="space", label="space", generic=True,
        generic_reason=second.generic_reason, contexts=[CTX],
    )  # fmt: skip
    with session_scope() as session:
        from service.job_payloads import DiagnosisPayload
        from service.submissions import create_job

        job = create_job(session, DiagnosisPayload(prompt="q", expected="1"), _owner(session))
        rid, _ = store_report(session, report, job.id, owner_key_id=_owner(session))
    html = client.get(f"/reports/{rid}").text
    section = html[html.index('class="card flagged-features"') :]
    section = section[: section.index("</section>")]
    assert section.count('<mark class="peak">by</mark>') == 2  # each card's context, peak marked
    text = _text(section)
    assert '#11 "multiply" label AUROC 0.93' in text
    assert "Multiply the area by the stroke" in text
    assert (
        "35.60 on both paths: it peaks before they part, on text both share, 4.0x its usual 8.90"
        in text
    )
    assert "(estimate disagrees; the ablation decides)" in text  # its attribution is positive
    assert text.count("estimate disagrees") == 1  # the other's is negative
    assert 'data-feature="12"' in section and "generic" in text
    assert text.index("#11") < text.index("#12")


def test_the_audit_page_leads_with_first_errors_and_spans(client):
    rng = random.Random(4)
    opts = DiagnosisOptions.model_validate(FAST_OPTIONS)
    with session_scope() as session:
        items = [ProblemItem(index=i, prompt=f"q{i}", expected="1") for i in range(3)]
        audit, job_ids = create_audit(session, items, opts, owner_key_id=_owner(session))
        for k, job_id in enumerate(job_ids):
            report = synthetic_report(rng, correct=False, flagged=[5, 6], fixed=True)
            report.first_error = FirstError(
                kind="calculation_slip" if k < 2 else "misread_number", found_by="calculator",
                output_span=(0, 5), step_text=f"48 / 2 = 2{k + 5}", should_be="48 / 2 = 24",
                evidence="arithmetic", confidence="checked",
            )  # fmt: skip
            report.context = ContextAttribution(
                effects=[
                    SpanEffect(kind="sentence", span=(0, 19), text="She also has a dog.",
                               gap=0.5, gap_change=1.5, fixed=True),
                ],
                responsible_span=(0, 19), responsible_reason="deleting it fixes the answer",
            )  # fmt: skip
            store_report(session, report, job_id, audit.id, owner_key_id=_owner(session))
    html = client.get(f"/audits/{audit.id}").text
    text = _text(html)
    first_errors = text.index("First errors")
    spans = text.index("Which part of the problems carried the failures")
    concepts = text.index("Concepts that beat the selection-matched null")
    assert first_errors < spans < concepts < text.index("Problems")
    assert 'data-count="calculation_slip">2<' in html and 'data-count="misread_number">1<' in html
    assert "e.g. wrote 48 / 2 = 25 where it should be 48 / 2 = 24" in text
    assert 'data-count="distracting">3<' in html and "She also has a dog." in text
    # three fixes and three flips where the null's draws fixed and flipped none: both latents'
    # concepts beat it (no atlas here: named by id, without cards)
    assert text.count("fixed 3 of 3") == 2 and "latent #5" in text and "latent #6" in text
