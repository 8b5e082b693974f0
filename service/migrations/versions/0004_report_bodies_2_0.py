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

from alembic import op

from service.report_body_rewrite import rewrite_report_bodies

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    rewrite_report_bodies(op.get_bind(), majors=("1",))


def downgrade() -> None:
    pass
