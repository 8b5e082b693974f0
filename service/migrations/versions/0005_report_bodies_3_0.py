"""stored report bodies in report schema 3.0

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 00:00:00

Schema 3.0 adds `trace` (the attribution graph of a failure through per-layer transcoders); no
stored report has one, so 1.x and 2.x bodies are rewritten through
diagnostics.report.upgrade_report_body with `trace: null` and version 3.0. Reading still
upgrades on the fly, so a database that skipped this revision serves the same reports. Rows are
rewritten in batches; downgrade keeps the 3.0 bodies (a 2.0 reader ignores `trace`).
"""

import sqlalchemy as sa
from alembic import op

from diagnostics.report import upgrade_report_body

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 500


def upgrade() -> None:
    bind = op.get_bind()
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
            body = row.body
            if str(body.get("schema_version", "1.0")).split(".")[0] in ("1", "2"):
                bind.execute(
                    sa.update(report)
                    .where(report.c.id == row.id)
                    .values(body=upgrade_report_body(body))
                )
        last = rows[-1].id


def downgrade() -> None:
    pass
