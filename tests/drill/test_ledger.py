"""The drill's ledger: what counts as accepted, lost and duplicated."""

from __future__ import annotations

import json

from drill.observe import Ledger, Observation, Submission, is_error_shape


def accepted(job_id: str) -> bytes:
    return json.dumps({"id": job_id, "status": "pending"}).encode()


def error(status: int = 503) -> bytes:
    inner = {"type": "x", "code": "service_unavailable", "message": "m", "param": None}
    body = {
        "event_id": "e",
        "type": "x",
        "is_bifrost_error": True,
        "status_code": status,
        "error": {**inner, "event_id": "e"},
        "extra_fields": {},
    }
    return json.dumps(body).encode()


def completed(result_id: str = "cmpl-1") -> Observation:
    return Observation("completed", 200, result_id=result_id)


def failed(code: str) -> Observation:
    return Observation("failed", 502, error_code=code, error_message="broken")


def ledger_with(*answers: tuple[str, int | None, bytes]) -> Ledger:
    """A ledger with one submit per answer: (marker, HTTP status or None, body)."""
    ledger = Ledger()
    for marker, status, body in answers:
        ledger.submissions[marker] = Submission()
        if status is not None:
            ledger.answered(marker, status, body, at=1.0)
    return ledger


def test_only_a_202_with_a_job_id_counts_as_accepted():
    ledger = ledger_with(
        ("a", 202, accepted("job-a")),
        ("b", 503, error()),
        ("c", None, b""),
        ("d", 202, b"<html>"),
    )
    assert ledger.accepted_ids() == ["job-a"]
    summary = ledger.summary()
    assert (summary["submitted"], summary["accepted"], summary["unanswered"]) == (4, 1, 1)
    assert summary["refused"] == {"202": 1, "503": 1}


def test_a_refusal_outside_the_error_shape_is_counted():
    ledger = ledger_with(("a", 503, error()), ("b", 500, b"<h1>Server Error</h1>"))
    assert ledger.summary()["refused_not_in_error_shape"] == 1


def test_an_accepted_job_not_terminal_at_the_final_poll_is_lost():
    ledger = ledger_with(
        ("a", 202, accepted("done")), ("b", 202, accepted("stuck")), ("c", 202, accepted("gone"))
    )
    ledger.finally_seen("done", completed())
    ledger.finally_seen("stuck", Observation("processing"))
    ledger.finally_seen("gone", None)  # 404
    summary = ledger.summary()
    assert summary["lost"] == 2
    assert set(summary["lost_ids"]) == {"stuck", "gone"}
    assert summary["completed"] == 1


def test_an_accepted_job_never_polled_at_the_end_is_lost():
    ledger = ledger_with(("a", 202, accepted("job-a")))
    ledger.seen("job-a", completed())
    assert ledger.summary()["lost"] == 1


def test_failed_jobs_are_counted_by_error_code_and_are_not_lost():
    ledger = ledger_with(("a", 202, accepted("x")), ("b", 202, accepted("y")))
    ledger.finally_seen("x", failed("upstream_timeout"))
    ledger.finally_seen("y", failed("upstream_timeout"))
    summary = ledger.summary()
    assert summary["failed"] == {"upstream_timeout": 2}
    assert summary["lost"] == 0


def test_an_outcome_that_changed_after_a_client_saw_it_is_duplicated():
    ledger = ledger_with(("a", 202, accepted("x")), ("b", 202, accepted("y")))
    ledger.seen("x", completed("cmpl-first"))
    ledger.finally_seen("x", completed("cmpl-second"))
    ledger.seen("y", completed("cmpl-same"))
    ledger.finally_seen("y", completed("cmpl-same"))
    summary = ledger.summary()
    assert summary["changed_after_seen"] == ["x"]
    assert summary["duplicated"] == 1


def test_a_job_first_seen_pending_then_finished_is_not_duplicated():
    ledger = ledger_with(("a", 202, accepted("x")))
    ledger.seen("x", Observation("pending"))
    ledger.seen("x", Observation("processing"))
    ledger.finally_seen("x", completed())
    assert ledger.summary()["duplicated"] == 0
    assert ledger.unseen_ids() == []


def test_two_rows_from_one_submit_are_duplicated():
    ledger = ledger_with(("a", 202, accepted("x")), ("b", 202, accepted("y")))
    ledger.finally_seen("x", completed())
    ledger.finally_seen("y", completed())
    ledger.rows = [("x", "a", "completed"), ("x2", "a", "completed"), ("y", "b", "completed")]
    summary = ledger.summary()
    assert summary["extra_rows"] == 1
    assert summary["duplicated"] == 1


def test_rows_of_refused_and_unanswered_submits_are_told_apart():
    ledger = ledger_with(("a", 503, error()), ("b", None, b""), ("c", 202, accepted("z")))
    ledger.rows = [("x", "a", "completed"), ("y", "b", "pending"), ("z", "c", "completed")]
    summary = ledger.summary()
    assert summary["created_without_202"] == {
        "after_refusal": 1,
        "after_no_answer": 1,
        "unfinished": 1,
    }
    assert summary["rows_of_unknown_submits"] == 0


def test_a_poll_body_becomes_an_observation_of_its_outcome():
    body = {
        "status": "failed",
        "status_code": 504,
        "result": None,
        "error": {"error": {"code": "upstream_timeout", "message": "no answer in 8 s"}},
    }
    observation = Observation.from_poll(body)
    assert observation.terminal
    assert observation == Observation("failed", 504, None, "upstream_timeout")
    assert observation.error_message == "no answer in 8 s"
    assert Observation.from_poll({"status": "completed", "result": {"id": "cmpl-9"}}).result_id == (
        "cmpl-9"
    )


def test_the_error_shape_needs_every_documented_key():
    assert is_error_shape(error())
    body = json.loads(error())
    del body["error"]["param"]
    assert not is_error_shape(json.dumps(body).encode())
    assert not is_error_shape(b"<html>503</html>")
    assert not is_error_shape(b"[]")


def test_an_error_message_is_no_part_of_the_outcome():
    assert failed("upstream_timeout") == Observation("failed", 502, error_code="upstream_timeout")
    assert failed("upstream_timeout") != failed("invalid_upstream_response")


def test_pending_counters_are_compared_with_the_counted_jobs_pending_or_processing():
    # (completed, charged, the spend ledger's charges, pending counters, counted active jobs)
    ledger = Ledger(counts=(0, 0, 0, 4, 4))
    assert ledger.summary()["pending_miscounted"] == 0
    ledger.counts = (0, 0, 0, 3, 5)
    assert ledger.summary()["pending_miscounted"] == -2


def test_charges_beyond_one_per_charged_job_and_completed_jobs_uncharged_are_counted():
    ledger = Ledger(counts=(10, 10, 10, 0, 0))
    assert (ledger.summary()["charged_twice"], ledger.summary()["completed_uncharged"]) == (0, 0)
    ledger.counts = (10, 9, 11, 0, 0)
    assert (ledger.summary()["charged_twice"], ledger.summary()["completed_uncharged"]) == (2, 1)
