"""The models in voltaro/store/schema.py and the migration chain describe the same
schema, on both databases: a table or column added to one and not the other would only
show up when a deployed database was upgraded (issue 18 added four tables at once)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from voltaro.store.schema import Base


def _differences(db: Any) -> list[Any]:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        diffs = compare_metadata(context, Base.metadata)
    # alembic's own version table is not a model.
    return [d for d in diffs if "alembic_version" not in repr(d)]


def test_upgraded_database_matches_the_models(db: Any) -> None:
    assert _differences(db) == []
