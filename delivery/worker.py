"""The project's RQ worker (``RQ["WORKER_CLASS"]``): runs jobs in its own
process (rq's SimpleWorker, no fork per job) and registers the periodic sweep.

A fork per job costs more than sending an email: with forking workers the
flash-sale benchmark's paid → email p50 was 20 s (the queue could not keep
up); with these it is 92 ms (bench/RESULTS.md). Jobs still time out (rq's
signal-based death penalty), and a worker that dies is restarted by its
supervisor (compose, make run); the send lease and the sweeper cover the job
it was running.

Every long-running worker makes sure the sweep job is on the schedule when it
starts, so the sweeper runs wherever a worker runs (``make run``, compose)
with no extra process. The job repeats itself through rq's ``Repeat``; the
fixed job id keeps one schedule however many workers start.

A job is to this process what a request is to the web's: Django's database
connection is checked before it and dropped after it if it broke or aged
(Django's ``close_old_connections`` around every request). Without it a
connection that the database dropped (a failover, a restart) fails every job
after it, for good: Django never reconnects an open connection by itself.
"""

from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import connections
from rq import Repeat, SimpleWorker
from rq.job import JobStatus

SWEEP_JOB_ID = "sweep-periodic"
SWEEP_QUEUE = "default"
SWEEP_TIMEOUT = 300
# rq needs a finite count; at one pass a minute this outlasts any worker,
# and every worker start tops it up again.
SWEEP_REPEATS = 10**9

_ALIVE = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED}


def sweep_periodic_register() -> bool:
    """Put the sweep on the schedule unless it is already there. Returns whether it was added."""
    queue = django_rq.get_queue(SWEEP_QUEUE)
    job = queue.fetch_job(SWEEP_JOB_ID)
    if job is not None and job.get_status() in _ALIVE:
        return False
    interval = settings.SWEEP_INTERVAL_SECONDS
    queue.enqueue_in(
        timedelta(seconds=interval), "delivery.jobs.sweep_job", job_id=SWEEP_JOB_ID,
        job_timeout=SWEEP_TIMEOUT, repeat=Repeat(times=SWEEP_REPEATS, interval=interval),
    )
    return True


class SweepingWorker(SimpleWorker):
    def work(self, burst: bool = False, *args, **kwargs):
        if not burst:
            sweep_periodic_register()
        return super().work(burst, *args, **kwargs)

    def perform_job(self, job, queue) -> bool:
        # As around a request: a dead or expired connection is closed before
        # the job (the next query opens a new one, on whichever host accepts
        # writes now) and after it, if the job broke it.
        _connections_refresh()
        try:
            return super().perform_job(job, queue)
        finally:
            _connections_refresh()


def _connections_refresh() -> None:
    """``close_old_connections``, but leaving alone a connection inside a
    transaction: one a caller opened around a burst worker (a test) is not the
    worker's to close."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
