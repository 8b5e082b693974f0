"""Rewrite stored report bodies in place, in batches: what a migration does when the report
schema gains a major version (reading upgrades old bodies on the fly as well)."""

from __future__ import annotations

import sqlalchemy as sa

from diagnostics.report import upgrade_report_body

BATCH = 500


def rewrite_report_bodies(bind, majors: tuple[str, ...]) -> None:
    """Upgrade every stored body whose schema major version is in `majors` through
    `upgrade_report_body`, BATCH rows at a time in id order."""
    report = sa.table(
        "report", sa.column("id", sa.String), sa.column("body", sa.JSON().with_variant(
            sa.dialects.postgresql.JSONB(), "postgresql"))
    )  # fmt: skip
    last = ""
    while True:
        rows = bind.execute(
            sa.select(report.c.id, report.c.body)
            .where(report.c.id > last)
            .order_by(report.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            if str(row.body.get("schema_version", "1.0")).split(".")[0] in majors:
                bind.execute(
                    sa.update(report)
                    .where(report.c.id == row.id)
                    .values(body=upgrade_report_body(row.body))
                )
        last = rows[-1].id
