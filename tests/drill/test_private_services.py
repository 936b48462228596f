"""The drill's own Postgres and Redis: how they are run and read (nothing is started here)."""

from __future__ import annotations

from drill import services
from drill.observe import verdict
from drill.services import PrivatePostgres
from harness.procs import Procs

POSTGRES_LOG = """\
2026-11-26 16:20:05.454 UTC [11060] LOG:  database system is ready to accept connections
2026-11-26 16:20:05.454 UTC [11060] ERROR:  deadlock detected
2026-11-26 16:20:05.454 UTC [11060] DETAIL:  Process 11060 waits for ShareLock on transaction 5010
2026-11-26 16:20:09.380 UTC [11061] ERROR:  deadlock detected
2026-11-26 16:21:00.000 UTC [11062] FATAL:  the database system is shutting down
2026-11-26 16:21:01.000 UTC [11063] ERROR:  canceling statement due to user request
"""


def test_postgres_errors_are_counted_by_message_from_the_servers_log(tmp_path):
    procs = Procs(tmp_path / "logs")
    postgres = PrivatePostgres(procs, tmp_path / "drill")
    assert postgres.logged_errors() == {}
    procs.log_path(postgres.name).write_text(POSTGRES_LOG)
    assert postgres.logged_errors() == {
        "deadlock detected": 2,
        "canceling statement due to user request": 1,
    }
    assert postgres.root.parent == tmp_path / "drill"
    assert postgres.url("gateway_drill").endswith(f":{postgres.port}/gateway_drill")


def test_as_root_the_cluster_runs_as_the_postgres_account(monkeypatch):
    monkeypatch.setattr(services.os, "geteuid", lambda: 0)
    assert services.as_service_account()[:2] == ["setpriv", "--reuid=postgres"]
    monkeypatch.setattr(services.os, "geteuid", lambda: 1000)
    assert services.as_service_account() == []


def test_a_scenario_passes_only_with_nothing_lost_or_duplicated_and_its_own_condition():
    clean = {
        "lost": 0,
        "duplicated": 0,
        "charged_twice": 0,
        "completed_uncharged": 0,
        "pending_miscounted": 0,
    }
    held, broken = {"own": True, "other": True}, {"own": True, "other": False}
    assert verdict(clean, held)["passed"]
    assert not verdict(clean, broken)["passed"]
    assert not verdict(clean, broken)["extra_ok"]
    assert verdict(clean, held)["extra_condition"] == "own, other"
    assert not verdict({**clean, "lost": 1}, held)["passed"]
    assert not verdict({**clean, "duplicated": 1}, held)["passed"]
    assert not verdict({**clean, "charged_twice": 1}, held)["passed"]
    assert not verdict({**clean, "completed_uncharged": 1}, held)["passed"]
    assert not verdict({**clean, "pending_miscounted": -1}, held)["passed"]
