"""Who sees which rows: a caller sees the jobs, reports and audits of its own API key; an admin
key (or the service with auth off) sees every row, unowned ones included."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa


@dataclass(frozen=True)
class Scope:
    """The rows a caller may see and the owner of the rows it writes."""

    key_id: int | None  # the caller's API key (None: auth off, or the in-process CLI)
    admin: bool

    def sees(self, owner_key_id: int | None) -> bool:
        return self.admin or (self.key_id is not None and owner_key_id == self.key_id)

    def clauses(self, owner_column: sa.ColumnElement) -> list:
        """WHERE clauses restricting a query on `owner_column` to this caller's rows."""
        return [] if self.admin else [owner_column == self.key_id]


EVERYONE = Scope(key_id=None, admin=True)  # auth off, the CLI, the workers
