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

from alembic import op

from service.report_body_rewrite import rewrite_report_bodies

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    rewrite_report_bodies(op.get_bind(), majors=("1", "2"))


def downgrade() -> None:
    pass
