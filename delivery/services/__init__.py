"""Delivery's services, by topic; import them from here.

The outbox: rows written in the paid transaction, sent by the worker. Sends
go out in batches: one job per up to ``DELIVERY_BATCH_SIZE`` deliveries
(``deliveries_enqueue``), claimed with one statement, sent over one
connection, recorded in one transaction. A delivery that fails in a batch is
retried on its own job (``delivery_enqueue``), as are resends, ``redeliver``
and the sweeper's rescues.

- ``outbox``: writing the delivery rows, enqueueing their send jobs, resends;
- ``sending``: claim, transmit, record (the batch and the single send), retries and dead letters;
- ``orphans``: the sweeper's part: live-job checks and re-enqueueing lost deliveries;
- ``runs``: the record of each periodic run;
- ``leases``: which process leads a single-runner job (the sweeper).
"""

from delivery.services.leases import lease_hold, lease_holder_new, lease_release  # noqa: F401
from delivery.services.orphans import (  # noqa: F401
    SWEEP_BATCH,
    deliveries_requeue_orphans,
    deliveries_with_live_job,
)
from delivery.services.outbox import (  # noqa: F401
    QUEUE,
    deliveries_batch_job_id,
    deliveries_create,
    deliveries_create_many,
    deliveries_enqueue,
    delivery_enqueue,
    delivery_resend,
    delivery_retry_enqueue,
)
from delivery.services.runs import sweep_run_record  # noqa: F401
from delivery.services.sending import (  # noqa: F401
    BATCH_SEND_SECONDS,
    ERROR_CHARS,
    DeadLetter,
    Send,
    SendsRecorded,
    deliveries_claim,
    deliveries_record,
    deliveries_recorded_announce,
    deliveries_send,
    deliveries_transmit,
    delivery_attempts_exhausted,
    delivery_dead_letter,
    delivery_failed,
    delivery_mark_failed,
    delivery_send,
)
