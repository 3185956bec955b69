"""A worker outlives its database connection: after a failover (or a restart)
the connection it held is dead, and the next job must open a new one."""

import django_rq
import psycopg
import pytest
from django.db import connection
from rq.job import JobStatus

from delivery.worker import SweepingWorker
from shop.models import Product

pytestmark = pytest.mark.django_db(transaction=True)


def products_count_job() -> int:
    return Product.objects.count()


def _backend_terminate(pid: int) -> None:
    """What a failover does to a connection: the server side goes away."""
    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"], port=db["PORT"] or None, dbname=db["NAME"], user=db["USER"],
                         password=db["PASSWORD"] or None, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def _worker_run(queue) -> SweepingWorker:
    worker = SweepingWorker([queue], connection=queue.connection)
    worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    return worker


def test_a_job_after_the_database_dropped_the_connection_runs_on_a_new_one(make_product):
    # given: a worker process whose connection was used, then dropped by the server while it was idle
    make_product(slug="p")
    queue = django_rq.get_queue("default")
    first = queue.enqueue(f"{__name__}.products_count_job")
    _worker_run(queue)
    assert first.get_status(refresh=True) == JobStatus.FINISHED
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        old_pid = cursor.fetchone()[0]
    _backend_terminate(old_pid)

    # when
    job = queue.enqueue(f"{__name__}.products_count_job")
    _worker_run(queue)

    # then: the job ran, on a new connection
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != old_pid


def test_a_job_that_broke_its_connection_leaves_a_working_one_to_the_next(make_product):
    # given: the connection dies under a running job (the primary is killed mid-job)
    make_product(slug="p")
    queue = django_rq.get_queue("default")
    dying = queue.enqueue(f"{__name__}.backend_terminate_then_count_job")
    after = queue.enqueue(f"{__name__}.products_count_job")

    # when
    _worker_run(queue)

    # then: the job that met the dead connection failed (RQ retries it); the next one ran
    assert dying.get_status(refresh=True) == JobStatus.FAILED
    assert after.get_status(refresh=True) == JobStatus.FINISHED
    assert after.return_value() == 1


def backend_terminate_then_count_job() -> int:
    with connection.cursor() as cursor:  # the job's connection is open; the health check has passed
        cursor.execute("SELECT pg_backend_pid()")
        _backend_terminate(cursor.fetchone()[0])
    return Product.objects.count()
