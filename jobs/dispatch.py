"""Ringing the bell: publish a job id to the broker. A failed publish never fails a submit.

The job row is already committed when this runs; if the broker is down the job stays
``pending`` and the beat task ``redispatch_stale_jobs`` publishes it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from uuid import UUID

from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

# Fail fast when the broker is down: the beat task re-dispatches, the client must not wait.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


def dispatch(job_ids: Iterable[UUID | str]) -> int:
    from jobs.tasks import run_job

    sent = 0
    for job_id in job_ids:
        try:
            run_job.apply_async(args=[str(job_id)], retry=True, retry_policy=PUBLISH_RETRY_POLICY)
            sent += 1
        except (OperationalError, OSError) as exc:
            logger.warning(
                "broker unavailable, job %s stays pending until re-dispatch: %s",
                job_id,
                type(exc).__name__,
            )
            break
        except Exception:
            # The row is committed and the client is told 202: whatever goes wrong with the
            # bell must not turn that into an error. The beat task publishes the job again.
            logger.exception("publishing job %s failed; it stays pending until re-dispatch", job_id)
            break
    return sent
