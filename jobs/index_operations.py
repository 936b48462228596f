"""Migration operations that add and remove the job table's indexes without stopping its writes.

A plain ``CREATE INDEX`` on Postgres holds a lock that makes every insert, update and delete of
the table wait until the index is built, which on a production job table means submits and the
workers' writes stall for as long as the build takes. ``CREATE INDEX CONCURRENTLY`` (and ``DROP
INDEX CONCURRENTLY``) let them go on; they cannot run inside a transaction, so a migration that
uses these operations sets ``atomic = False``. If a concurrent build fails (a deadlock, a
cancelled migrate), Postgres leaves an invalid index of that name behind: drop it and migrate
again.

SQLite, the embedded default, has no concurrent builds and one writer at a time anyway: there
these are Django's plain ``AddIndex`` and ``RemoveIndex``. On every database the migration state
they leave is ``AddIndex``'s and ``RemoveIndex``'s, so ``makemigrations`` sees the models as
migrated.
"""

from __future__ import annotations

from django.contrib.postgres import operations as postgres
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations import AddIndex, RemoveIndex
from django.db.migrations.state import ProjectState


def _concurrent(schema_editor: BaseDatabaseSchemaEditor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


class AddIndexConcurrently(postgres.AddIndexConcurrently):
    """``CREATE INDEX CONCURRENTLY`` on Postgres, a plain ``AddIndex`` elsewhere."""

    def describe(self) -> str:
        return f"{AddIndex.describe(self)} (concurrently on Postgres)"

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        if _concurrent(schema_editor):
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        if _concurrent(schema_editor):
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class RemoveIndexConcurrently(postgres.RemoveIndexConcurrently):
    """``DROP INDEX CONCURRENTLY`` on Postgres, a plain ``RemoveIndex`` elsewhere."""

    def describe(self) -> str:
        return f"{RemoveIndex.describe(self)} (concurrently on Postgres)"

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        if _concurrent(schema_editor):
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            RemoveIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        if _concurrent(schema_editor):
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            RemoveIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)
