"""What a scenario's client saw, and the counts the drill judges it by (the report's legend in
drill/run.py says what each means). Every submit carries a unique marker as its prompt, so each
job row can be traced back to the submit that made it; each scenario starts with an empty job
table and spend ledger. A job row after an unanswered submit is no error (the client cannot
know), but a refused submit must have created nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("completed", "failed", "cancelled")
SPEND_TABLE = "gateway_keyspend"  # KeySpend (gateway/access/models.py); no Django here
COUNTERS_TABLE = "jobs_keycounters"  # KeyCounters (jobs/models.py)
ERROR_SHAPE_KEYS = {"event_id", "type", "is_bifrost_error", "status_code", "error", "extra_fields"}
ERROR_KEYS = {"type", "code", "message", "param", "event_id"}


def is_error_shape(body: bytes) -> bool:
    """Whether an answer is a JSON error in the gateway's one error shape."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(data, dict)
        and data.keys() >= ERROR_SHAPE_KEYS
        and isinstance(data["error"], dict)
        and data["error"].keys() >= ERROR_KEYS
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Observation:
    """One poll of a job: its status and what identifies its outcome."""

    status: str
    status_code: int | None = None
    result_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def from_poll(cls, body: dict[str, Any]) -> Observation:
        result = _object(body.get("result"))
        inner = _object(_object(body.get("error")).get("error"))
        return cls(
            status=str(body.get("status")),
            status_code=body.get("status_code"),
            result_id=result.get("id"),
            error_code=inner.get("code"),
            error_message=inner.get("message"),
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def outcome(self) -> tuple[str, int | None, str | None, str | None]:
        """What must never change once a client has seen it."""
        return (self.status, self.status_code, self.result_id, self.error_code)


@dataclass
class Submission:
    marker: str
    status: int | None = None  # None until answered, and for good when no answer came
    job_id: str | None = None
    error_shape: bool | None = None  # for answers other than 202
    answered_at: float | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 202 and self.job_id is not None


@dataclass
class Ledger:
    submissions: dict[str, Submission] = field(default_factory=dict)
    first_terminal: dict[str, Observation] = field(default_factory=dict)
    final: dict[str, Observation | None] = field(default_factory=dict)
    rows: dict[str, list[str]] = field(default_factory=dict)  # marker -> job ids in the table
    unfinished_rows: set[str] = field(default_factory=set)  # ids of rows not terminal at the end
    charged_twice: int = 0
    completed_uncharged: int = 0
    pending_miscounted: int = 0  # the keys' pending counters less their counted active jobs
    _unseen: set[str] = field(default_factory=set)  # accepted, not yet seen terminal

    # --- the client's side ------------------------------------------------------------------------
    def submitted(self, marker: str) -> None:
        self.submissions[marker] = Submission(marker)

    def answered(self, marker: str, status: int, body: bytes, at: float) -> None:
        entry = self.submissions[marker]
        entry.status, entry.answered_at = status, at
        if status == 202:
            try:
                entry.job_id = str(json.loads(body)["id"])
            except (ValueError, KeyError, TypeError):
                entry.job_id = None
            else:
                self._unseen.add(entry.job_id)
        else:
            entry.error_shape = is_error_shape(body)

    def accepted_ids(self) -> list[str]:
        return [s.job_id for s in self.submissions.values() if s.accepted and s.job_id]

    def unseen_ids(self) -> list[str]:
        return list(self._unseen)

    def seen(self, job_id: str, observation: Observation) -> None:
        if observation.terminal:
            self.first_terminal.setdefault(job_id, observation)
            self._unseen.discard(job_id)

    def finally_seen(self, job_id: str, observation: Observation | None) -> None:
        self.final[job_id] = observation
        if observation is not None:
            self.seen(job_id, observation)

    # --- the table's side -------------------------------------------------------------------------
    def table_rows(self, rows: list[tuple[str, str, str]]) -> None:
        """(job id, marker, status) of every job row."""
        self.rows = {}
        self.unfinished_rows = set()
        for job_id, marker, status in rows:
            self.rows.setdefault(marker, []).append(job_id)
            if status not in TERMINAL:
                self.unfinished_rows.add(job_id)

    def charges(self, completed: int, charged: int, ledger: int) -> None:
        """The job table's completed and charged jobs beside the spend ledger's charges."""
        self.charged_twice = ledger - charged
        self.completed_uncharged = completed - charged

    def counters(self, pending: int, active_counted: int) -> None:
        """The keys' counters of jobs pending or processing beside the job table's."""
        self.pending_miscounted = pending - active_counted

    # --- the counts -------------------------------------------------------------------------------
    def changed_after_seen(self) -> list[str]:
        return [
            job_id
            for job_id, first in self.first_terminal.items()
            if (last := self.final.get(job_id)) is not None and last.outcome != first.outcome
        ]

    def extra_rows(self) -> int:
        return sum(len(ids) - 1 for ids in self.rows.values() if len(ids) > 1)

    def created_without_202(self) -> dict[str, int]:
        """Job rows whose submit was refused, or got no answer; and how many never finished."""
        counts = {"after_refusal": 0, "after_no_answer": 0, "unfinished": 0}
        for marker, ids in self.rows.items():
            submission = self.submissions.get(marker)
            if submission is None or submission.accepted:
                continue
            counts["after_no_answer" if submission.status is None else "after_refusal"] += len(ids)
            counts["unfinished"] += sum(1 for job_id in ids if job_id in self.unfinished_rows)
        return counts

    def summary(self) -> dict[str, Any]:
        subs = list(self.submissions.values())
        accepted = self.accepted_ids()
        finals = [self.final.get(job_id) for job_id in accepted]
        lost = [
            job_id for job_id, o in zip(accepted, finals, strict=True) if not o or not o.terminal
        ]
        failed = Counter(o.error_code or "?" for o in finals if o and o.status == "failed")
        refused = [s for s in subs if s.status is not None and not s.accepted]
        changed = self.changed_after_seen()
        return {
            "submitted": len(subs),
            "accepted": len(accepted),
            "unanswered": sum(1 for s in subs if s.status is None),
            "refused": dict(sorted(Counter(str(s.status) for s in refused).items())),
            "refused_not_in_error_shape": sum(1 for s in refused if not s.error_shape),
            "completed": sum(1 for o in finals if o and o.status == "completed"),
            "failed": dict(sorted(failed.items())),
            "lost": len(lost),
            "lost_ids": lost[:20],
            "duplicated": len(changed) + self.extra_rows(),
            "changed_after_seen": changed[:20],
            "extra_rows": self.extra_rows(),
            "charged_twice": self.charged_twice,
            "completed_uncharged": self.completed_uncharged,
            "pending_miscounted": self.pending_miscounted,
            "created_without_202": self.created_without_202(),
            "rows_of_unknown_submits": sum(
                len(ids) for marker, ids in self.rows.items() if marker not in self.submissions
            ),
        }
