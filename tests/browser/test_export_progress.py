"""A large key export in a real Chromium at a phone's width, in English and
Chinese: "Export…" on the key list, the form, the progress page whose bar
follows the jobs as a real worker runs them, the download once.
Screenshots: test-artifacts/browser/test_export_progress_*.png."""

import django_rq
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect
from rq import SimpleWorker

from exports.models import Export, ExportStatus
from shop.models import OrderStatus

pytestmark = pytest.mark.django_db(transaction=True)

TEXTS = {
    "en": {"export": "Export…", "submit": "Export", "waiting": "Waiting for a worker…",
           "running": "4 of 10 rows written", "ready": "Ready: 10 rows", "download": "Download",
           "downloaded": "Downloaded. The file has been deleted from the server."},
    "zh-hans": {"export": "导出…", "submit": "导出", "waiting": "正在等待后台任务…",
                "running": "已写入 4 / 10 行", "ready": "已完成：10 行", "download": "下载",
                "downloaded": "已下载。文件已从服务器删除。"},
}
SCROLL_WIDTH = "() => [document.documentElement.scrollWidth, window.innerWidth]"


def _sign_in(page, shop_url, settings):
    settings.ADMIN_REQUIRE_2FA = False
    owner = get_user_model().objects.create_superuser(username="owner", email="owner@example.com", password="x")
    client = Client()
    client.force_login(owner)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": shop_url}])


def _run_one_job() -> bool:
    queues = [django_rq.get_queue(name) for name in settings.RQ_QUEUES]
    return SimpleWorker(queues, connection=queues[0].connection).work(burst=True, max_jobs=1, with_scheduler=False,
                                                                      logging_level="WARNING")


def _fits(page):
    scroll_width, viewport = page.evaluate(SCROLL_WIDTH)
    assert scroll_width <= viewport, f"page is {scroll_width}px wide in a {viewport}px window"


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_export_progress_page(page, shop_url, settings, make_product, screenshot, language):
    # given: 10 keys; past 3 rows an export goes to jobs of 4 rows
    settings.EXPORT_STREAM_MAX_ROWS = 3
    settings.EXPORT_SLICE_ROWS = 4
    make_product(keys=10, slug="gift")
    texts = TEXTS[language]
    page.set_viewport_size({"width": 390, "height": 844})
    _sign_in(page, shop_url, settings)
    page.goto(f"{shop_url}/admin/inventory/cardkey/?status__exact=AVAILABLE")
    if language == "zh-hans":
        page.locator("#kd-language button[lang=zh-hans]").click()
        expect(page.locator("html")).to_have_attribute("lang", "zh-hans")

    # the order export's form fits too (eight status boxes, dates)
    page.goto(f"{shop_url}/admin/exports/export/new/orders/")
    expect(page.locator("#id_statuses input")).to_have_count(len(OrderStatus.values))
    _fits(page)
    screenshot(f"orders-form-{language}")
    page.go_back()

    # when: "Export…" on the key list, then the form
    page.locator("#kd-export-link").click()
    expect(page.locator("#kd-export-form")).to_be_visible()
    _fits(page)
    screenshot(f"form-{language}")
    page.locator("#kd-export-form [type=submit]").click()
    # then: the progress page, waiting for the worker
    expect(page.locator("#kd-export-state")).to_have_text(texts["waiting"])
    expect(page.locator("#kd-export-bar")).to_have_attribute("value", "0")
    expect(page.locator("#kd-export-download")).to_be_hidden()

    # when: the worker writes the first slice
    _run_one_job()
    # then: the bar moves without a reload
    expect(page.locator("#kd-export-bar")).to_have_attribute("value", "40")
    expect(page.locator("#kd-export-state")).to_have_text(texts["running"])
    _fits(page)
    screenshot(f"running-{language}")

    # when: the rest
    while _run_one_job():
        pass
    # then
    expect(page.locator("#kd-export-percent")).to_have_text("100")
    expect(page.locator("#kd-export-state")).to_contain_text(texts["ready"])
    button = page.locator("#kd-export-download [type=submit]")
    expect(button).to_have_value(texts["download"])
    _fits(page)
    screenshot(f"ready-{language}")

    # when: downloaded
    with page.expect_download() as download:
        button.click()
    # then: the file, once
    lines = download.value.path().read_text(encoding="utf-8-sig").splitlines()
    assert len(lines) == 11
    expect(page.locator("#kd-export-state")).to_have_text(texts["downloaded"])
    expect(button).to_be_hidden()
    assert Export.objects.get().status == ExportStatus.DOWNLOADED
