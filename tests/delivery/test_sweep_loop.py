"""manage.py sweep --every: a loop that keeps sweeping until SIGTERM."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from delivery.models import SweepRun

BASE_DIR = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sweep_loop_sweeps_repeatedly_and_stops_on_sigterm():
    # given: the loop pointed at this test's database and Redis db
    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "shop.project.settings", "DEBUG": "1",
           "DATABASE_URL": f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}",
           "REDIS_URL": settings.REDIS_URL}
    loop = subprocess.Popen([sys.executable, "manage.py", "sweep", "--every", "0.2"], cwd=BASE_DIR, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # when
    deadline = time.monotonic() + 30
    first = None
    while time.monotonic() < deadline:
        run = SweepRun.objects.first()
        if run and first is None:
            first = run.started_at
        elif run and run.started_at > first:
            break
        time.sleep(0.1)
    loop.send_signal(signal.SIGTERM)
    out, err = loop.communicate(timeout=30)
    # then
    assert loop.returncode == 0, err
    assert SweepRun.objects.get().started_at > first
    assert out.count("re-enqueued 0 deliveries") >= 2
