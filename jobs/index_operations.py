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

from typing import Any

from django.contrib.postgres import operations as postgres
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations import AddIndex, RemoveIndex
from django.db.migrations.state import ProjectState


class _ConcurrentOnPostgres:
    """Runs the Postgres operation it is mixed into on Postgres, ``plain`` elsewhere."""

    plain: Any  # the operation's plain counterpart: AddIndex or RemoveIndex

    def describe(self) -> str:
        return f"{self.plain.describe(self)} (concurrently on Postgres)"

    def _run(
        self, direction: str, app_label: str, schema_editor: BaseDatabaseSchemaEditor, *states: Any
    ) -> None:
        if schema_editor.connection.vendor == "postgresql":
            getattr(super(), direction)(app_label, schema_editor, *states)
        else:
            getattr(self.plain, direction)(self, app_label, schema_editor, *states)

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        self._run("database_forwards", app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        self._run("database_backwards", app_label, schema_editor, from_state, to_state)


class AddIndexConcurrently(_ConcurrentOnPostgres, postgres.AddIndexConcurrently):
    """``CREATE INDEX CONCURRENTLY`` on Postgres, a plain ``AddIndex`` elsewhere."""

    plain = AddIndex


class RemoveIndexConcurrently(_ConcurrentOnPostgres, postgres.RemoveIndexConcurrently):
    """``DROP INDEX CONCURRENTLY`` on Postgres, a plain ``RemoveIndex`` elsewhere."""

    plain = RemoveIndex
