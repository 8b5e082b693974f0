"""ownership: jobs, reports and audits belong to an API key; admin keys

Existing jobs, reports and audits get no owner (owner_key_id NULL, "unowned"): only admin keys
(and the service with auth off) see them. Make a key admin with `driftscope apikey create
--admin` to read them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 01:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OWNED = ("audit", "job", "report")


def upgrade() -> None:
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    for table in OWNED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("owner_key_id", sa.Integer(), nullable=True))
            batch_op.create_index(f"ix_{table}_owner_key_id", ["owner_key_id"], unique=False)
            batch_op.create_foreign_key(
                f"fk_{table}_owner_key_id", "api_key", ["owner_key_id"], ["id"]
            )


def downgrade() -> None:
    for table in OWNED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_owner_key_id", type_="foreignkey")
            batch_op.drop_index(f"ix_{table}_owner_key_id")
            batch_op.drop_column("owner_key_id")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_column("admin")
