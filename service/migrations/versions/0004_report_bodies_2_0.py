"""stored report bodies in report schema 2.0

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:30:00

Reports stored before the first-wrong-step change (schema 1.x) are rewritten in the 2.0 layout
(diagnostics.report.upgrade_report_body: firing positions under `position`, attributions under
`attribution`, the divergence's near-tie flag; no first error, which a 1.x diagnosis never looked
for). Reading still upgrades on the fly, so a database that skipped this revision serves the same
reports; after it, every stored body validates as 2.0 as it is. Rows are rewritten in batches;
downgrade keeps the 2.0 bodies (a 1.x reader ignores the fields it does not know).
"""

import sqlalchemy as sa
from alembic import op

from diagnostics.report import upgrade_report_body

revision = "0004"
down_revision = "0003"
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
            if str(body.get("schema_version", "1.0")).startswith("1."):
                bind.execute(
                    sa.update(report)
                    .where(report.c.id == row.id)
                    .values(body=upgrade_report_body(body))
                )
        last = rows[-1].id


def downgrade() -> None:
    pass
