"""Celery's part: a bell wakes this process's engine; the worker's start and stop run the engine.

The engine itself is replaced by a recorder here (tests/jobs/test_engine.py runs the real one);
tests/e2e/test_worker_without_broker_e2e.py starts real workers of each pool.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.concurrency.solo import TaskPool as SoloPool
from celery.concurrency.thread import TaskPool as ThreadPool

from jobs import engine as engine_module
from jobs import tasks


class RecordingEngine:
    """Stands in for JobEngine: counts bells and remembers being shut down."""

    created = 0

    def __init__(self) -> None:
        RecordingEngine.created += 1
        self.bells = 0
        self.shut_down = False

    def start(self) -> RecordingEngine:
        return self

    def wake(self) -> None:
        self.bells += 1

    def shutdown(self, grace: float) -> None:
        self.shut_down = True


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that has not started an engine yet, whose engine would be a recorder."""
    monkeypatch.setattr(engine_module, "JobEngine", RecordingEngine)
    monkeypatch.setattr(engine_module, "_engine", None)
    monkeypatch.setattr(engine_module, "_engine_closed", False)
    monkeypatch.setattr(RecordingEngine, "created", 0)


def running_engine() -> RecordingEngine | None:
    engine = engine_module._engine
    assert engine is None or isinstance(engine, RecordingEngine)
    return engine


def worker(pool: object) -> SimpleNamespace:
    """What ``worker_init`` sends: the worker, whose pool is an alias or (from the CLI) a class."""
    return SimpleNamespace(pool_cls=pool)


@pytest.mark.parametrize("pool", ["threads", "solo", ThreadPool, SoloPool])
def test_a_worker_running_tasks_in_its_own_process_starts_its_engine_at_init(pool):
    tasks._start_engine_with_the_worker(sender=worker(pool))

    assert running_engine() is not None


@pytest.mark.parametrize("pool", ["prefork", PreforkPool])
def test_a_prefork_worker_starts_no_engine_in_the_process_that_forks(pool):
    tasks._start_engine_with_the_worker(sender=worker(pool))

    assert running_engine() is None


def test_each_pool_process_starts_its_own_engine():
    tasks._start_engine_in_a_pool_process(sender="celery@host")

    assert running_engine() is not None


def test_a_process_starts_one_engine_however_often_it_is_told():
    # The solo pool sends worker_init and worker_process_init to the same process.
    tasks._start_engine_with_the_worker(sender=worker("solo"))
    tasks._start_engine_in_a_pool_process(sender="celery@host")

    assert RecordingEngine.created == 1


def test_a_bell_wakes_this_processes_engine():
    tasks._start_engine_with_the_worker(sender=worker("threads"))

    assert tasks.run_jobs.apply().successful()

    engine = running_engine()
    assert engine is not None and engine.bells == 1


def test_bells_queued_by_older_web_processes_with_job_ids_are_accepted():
    tasks._start_engine_with_the_worker(sender=worker("threads"))
    ids = ["0b0e6a55-5bd6-4c1b-a2a8-8d7bb0a1f5d1", "6f1c1d1e-8f7e-4c57-9d0a-3f4e2b1c0d9e"]

    assert tasks.run_jobs.apply(args=[ids]).successful()
    assert tasks.run_jobs.apply(kwargs={"job_ids": ids}).successful()

    engine = running_engine()
    assert engine is not None and engine.bells == 2


def test_a_bell_in_a_process_without_an_engine_does_nothing():
    assert tasks.run_jobs.apply().successful()

    assert running_engine() is None
    assert RecordingEngine.created == 0


def test_stopping_the_worker_drains_its_engine_and_none_starts_again():
    tasks._start_engine_with_the_worker(sender=worker("threads"))
    engine = running_engine()

    tasks._drain_engine(sender="celery@host")
    tasks._start_engine_in_a_pool_process(sender="celery@host")
    tasks.run_jobs.apply()

    assert engine is not None and engine.shut_down
    assert engine.bells == 0
    assert running_engine() is None
    assert RecordingEngine.created == 1
