"""A large export: written by a chain of short RQ jobs (a real burst worker on
the real Redis), its progress read from the JSON endpoint up to 100 %, the
file downloaded once, by the user who asked for it, then deleted; files left
unread expire; a chain that stopped is resumed by the sweep."""

from datetime import timedelta

import django_rq
import pytest
from django.conf import settings
from django.utils import timezone
from rq import SimpleWorker

from exports.models import Export, ExportPart, ExportStatus
from exports.services import export_enqueue, exports_tidy
from inventory.models import CardKey, KeyAuditEvent
from tests.exports.conftest import body, csv_rows, xlsx_rows

pytestmark = pytest.mark.django_db(transaction=True)

KEYS_URL = "/admin/exports/export/new/keys/"
ORDERS_URL = "/admin/exports/export/new/orders/"


@pytest.fixture(autouse=True)
def small_sets(settings):
    """Past 3 rows an export goes to the jobs, 4 rows a job."""
    settings.EXPORT_STREAM_MAX_ROWS = 3
    settings.EXPORT_SLICE_ROWS = 4


def _run_one_job() -> bool:
    queues = [django_rq.get_queue(name) for name in settings.RQ_QUEUES]
    return SimpleWorker(queues, connection=queues[0].connection).work(burst=True, max_jobs=1, with_scheduler=False,
                                                                      logging_level="WARNING")


def _status(client, export) -> dict:
    response = client.get(f"/admin/exports/export/{export.pk}/status/")
    assert response.status_code == 200
    return response.json()


def test_large_key_export_runs_as_jobs_with_progress_to_100_and_downloads_once(admin_client, staff_client,
                                                                               make_product):
    # given: 10 keys in stock
    make_product(keys=10, slug="gift")
    # when: the owner asks for them in plaintext
    response = admin_client.post(KEYS_URL, {"format": "CSV", "which": "unsold", "plaintext": "on"})
    # then: a progress page, not a file
    export = Export.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/exports/export/{export.pk}/progress/"
    page = admin_client.get(response["Location"]).content.decode()
    assert 'id="kd-export-bar" max="100" value="0"' in page
    assert f'data-status-url="/admin/exports/export/{export.pk}/status/"' in page
    first = _status(admin_client, export)
    assert (first["status"], first["percent"], first["total"], first["ready"], first["done"]) == (
        "QUEUED", 0, 10, False, False)

    # when: the worker takes the jobs one by one
    seen = []
    while _run_one_job():
        state = _status(admin_client, export)
        seen.append((state["status"], state["percent"], state["rows"]))
    # then: 4 rows a job, 100 % only once the file is whole
    assert seen == [("RUNNING", 40, 4), ("RUNNING", 80, 8), ("READY", 100, 10)]
    assert _status(admin_client, export)["message"].startswith("Ready: 10 rows")
    assert KeyAuditEvent.objects.filter(action="EXPORTED").count() == 10

    # when: someone else tries the download
    other = staff_client("inventory.view_cardkey", "inventory.export_cardkey")
    assert other.post(f"/admin/exports/export/{export.pk}/download/").status_code == 404
    assert other.get(f"/admin/exports/export/{export.pk}/status/").status_code == 404
    # and the owner downloads it
    download = admin_client.post(f"/admin/exports/export/{export.pk}/download/")
    data = body(download)
    # then
    rows = csv_rows(data)
    assert [int(row[0]) for row in rows[1:]] == list(CardKey.objects.order_by("id").values_list("pk", flat=True))
    assert [row[9] for row in rows[1:]] == [f"GIFT-KEY-{i:05d}" for i in range(10)]
    assert int(download["Content-Length"]) == len(data)
    assert download["Content-Disposition"] == f'attachment; filename="{Export.objects.get().file_name}"'
    assert ExportPart.objects.count() == 0
    export.refresh_from_db()
    assert (export.status, export.rows) == (ExportStatus.DOWNLOADED, 10)
    # and once only
    again = admin_client.post(f"/admin/exports/export/{export.pk}/download/")
    assert again.status_code == 410
    assert "Downloaded. The file has been deleted from the server." in again.content.decode()
    assert admin_client.get(f"/admin/exports/export/{export.pk}/download/").status_code == 405


def test_large_xlsx_written_across_jobs_reads_back_whole(admin_client, make_product, make_unpaid_order):
    # given: 7 unpaid orders, 3 jobs' worth
    product = make_product(slug="gift", name="礼品卡")
    orders = [make_unpaid_order(product=product, email=f"b{i}@example.com") for i in range(7)]
    # when
    admin_client.post(ORDERS_URL, {"format": "XLSX", "date_field": "created", "include_email": "on"})
    while _run_one_job():
        pass
    export = Export.objects.get()
    assert ExportPart.objects.filter(export=export).count() == 2  # one part per job
    rows = xlsx_rows(body(admin_client.post(f"/admin/exports/export/{export.pk}/download/")))
    # then
    assert [row[0] for row in rows[1:]] == [o.order_no for o in orders]
    assert {row[6] for row in rows[1:]} == {"礼品卡"}
    assert [row[15] for row in rows[1:]] == [f"b{i}@example.com" for i in range(7)]


def test_an_unread_file_expires_after_its_time(admin_client, make_product):
    # given: a finished export
    make_product(keys=5)
    admin_client.post(KEYS_URL, {"format": "CSV", "which": "unsold"})
    while _run_one_job():
        pass
    export = Export.objects.get(status=ExportStatus.READY)
    assert export.expires_at - export.finished_at == timedelta(minutes=60)
    # when: its hour passed and the sweep ran
    Export.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    tidied = exports_tidy()
    # then
    assert tidied == {"expired": 1, "parts_deleted": 2, "resumed": 0}  # 5 keys: two jobs, two parts
    assert ExportPart.objects.count() == 0
    assert admin_client.post(f"/admin/exports/export/{export.pk}/download/").status_code == 410
    assert _status(admin_client, export)["status"] == "EXPIRED"


def test_a_stopped_chain_is_resumed_by_the_sweep_and_a_duplicate_job_changes_nothing(admin_client, make_product,
                                                                                    redis_clean):
    # given: the first job ran, then Redis lost the queue
    make_product(keys=6, slug="gift")
    admin_client.post(KEYS_URL, {"format": "CSV", "which": "unsold"})
    _run_one_job()
    redis_clean.flushdb()
    export = Export.objects.get()
    assert (export.status, export.rows) == (ExportStatus.RUNNING, 4)
    # and a copy of the first job is enqueued again
    export_enqueue(export_id=export.pk, position=0)
    # when: the sweep finds it stalled
    Export.objects.filter(pk=export.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert exports_tidy()["resumed"] == 1
    while _run_one_job():
        pass
    # then: every key once
    export.refresh_from_db()
    assert (export.status, export.rows) == (ExportStatus.READY, 6)
    rows = csv_rows(body(admin_client.post(f"/admin/exports/export/{export.pk}/download/")))
    assert [row[3] for row in rows[1:]] == [""] * 6
    assert len(rows) == 7


def test_a_failing_job_fails_the_export_and_says_so(admin_client, make_product):
    # given: an export whose filter cannot be read (as an older release might have stored it)
    make_product(keys=5)
    admin_client.post(KEYS_URL, {"format": "CSV", "which": "unsold"})
    Export.objects.update(filters={"which": "unsold", "date_from": "not a day"})
    # when
    _run_one_job()
    # then
    export = Export.objects.get()
    assert (export.status, export.error) == (ExportStatus.FAILED, "ValueError")
    state = _status(admin_client, export)
    assert (state["status"], state["done"], state["message"]) == ("FAILED", True, "Failed. Start the export again.")
