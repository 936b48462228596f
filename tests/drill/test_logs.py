"""Reading what the gateway's processes logged after a scenario marked the spot."""

from __future__ import annotations

from drill.scenarios import BELLS_NOT_RUNG, ENGINE_STARTED, log_from_now, worker_said

ENGINE = (
    "2026-11-29 07:30:35,389 INFO jobs.engine job engine vm:28003:694f0013 started: "
    "up to 4096 jobs in flight"
)
REFUSED = (
    "2026-11-29 07:30:35,426 ERROR celery.worker.consumer.consumer consumer: Cannot connect to "
    "redis://:**@127.0.0.1:42127/0: Error 111 connecting to 127.0.0.1:42127. Connection refused.."
)
RETRY = "Trying again in 2.00 seconds... (1/None)"
READY = "2026-11-29 07:30:38,452 INFO celery.apps.worker drill-0@vm ready."
BELL = (
    "2026-11-29 07:30:25,734 WARNING jobs.dispatch broker unavailable, 1 bells not rung; "
    "engines find the jobs by polling: OperationalError"
)


def test_a_worker_log_names_its_engines_and_counts_refusals_and_ready_lines():
    text = "\n".join([ENGINE, REFUSED, RETRY, REFUSED, RETRY, READY])
    assert ENGINE_STARTED.findall(text) == ["vm:28003:694f0013"]
    assert worker_said(text) == {"engines_started": 1, "broker_refused_lines": 2, "ready_lines": 1}


def test_a_task_or_a_prompt_mentioning_ready_is_not_the_ready_line():
    said = worker_said("INFO jobs received: ready.\nINFO task jobs.run_jobs[x] ready")
    assert said["ready_lines"] == 0


def test_a_web_log_counts_the_bells_it_could_not_ring():
    text = "\n".join([BELL, "INFO granian listening", BELL.replace("1 bells", "3 bells")])
    assert len(BELLS_NOT_RUNG.findall(text)) == 2
    assert not BELLS_NOT_RUNG.findall(REFUSED)


def test_a_window_reads_only_what_was_logged_after_it_was_opened(tmp_path):
    log = tmp_path / "worker-0.log"
    log.write_text(f"{ENGINE}\n{READY}\n")  # an earlier worker of the same name
    since_now = log_from_now(log)
    assert since_now() == ""
    with log.open("a") as more:
        more.write(f"{REFUSED}\n")
    assert worker_said(since_now()) == {
        "engines_started": 0,
        "broker_refused_lines": 1,
        "ready_lines": 0,
    }


def test_a_window_on_a_log_not_written_yet_reads_all_of_it_once_it_is(tmp_path):
    log = tmp_path / "worker-0.log"
    since_now = log_from_now(log)
    assert since_now() == ""
    log.write_text(f"{ENGINE}\n")
    assert ENGINE_STARTED.findall(since_now()) == ["vm:28003:694f0013"]
