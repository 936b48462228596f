"""The migrations match the models, and the fair claim's indexes are built without blocking the
job table's writes on Postgres (jobs/index_operations.py), plainly on SQLite."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from jobs.models import AsyncJob

CLAIM_INDEXES = ("job_pending_group_idx", "job_processing_group_idx")


def sql_of(migration: str, *flags: str) -> str:
    out = StringIO()
    call_command("sqlmigrate", "jobs", migration, *flags, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_the_migrations_describe_the_models_as_they_are():
    out = StringIO()
    # Exits with status 1 when a model has changes no migration describes.
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_the_migrated_table_has_the_claims_indexes():
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, AsyncJob._meta.db_table)
        assert set(CLAIM_INDEXES) <= set(indexes)
        assert "job_pending_created_idx" not in indexes
        if connection.vendor == "postgresql":
            # A concurrent build that failed would leave an invalid index behind.
            cursor.execute(
                "SELECT count(*) FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid "
                "WHERE relname = ANY(%s) AND indisvalid AND indisready",
                [list(CLAIM_INDEXES)],
            )
            assert cursor.fetchone() == (len(CLAIM_INDEXES),)


# Not in a test transaction: a concurrent build refuses to run inside one.
@pytest.mark.django_db(transaction=True)
def test_the_claims_indexes_are_built_and_dropped_concurrently_on_postgres_plainly_on_sqlite():
    forwards, backwards = sql_of("0007"), sql_of("0007", "--backwards")

    if connection.vendor == "postgresql":
        for name in CLAIM_INDEXES:
            assert f'CREATE INDEX CONCURRENTLY "{name}"' in forwards
            assert f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"' in backwards
        assert 'DROP INDEX CONCURRENTLY IF EXISTS "job_pending_created_idx"' in forwards
        assert 'CREATE INDEX CONCURRENTLY "job_pending_created_idx"' in backwards
        assert "BEGIN" not in forwards
    else:
        assert "CONCURRENTLY" not in forwards + backwards
        for name in CLAIM_INDEXES:
            assert f'CREATE INDEX "{name}"' in forwards
            assert f'DROP INDEX "{name}"' in backwards
        assert 'DROP INDEX "job_pending_created_idx"' in forwards
