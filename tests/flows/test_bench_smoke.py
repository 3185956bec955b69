"""Short runs of the flash-sale and chaos benchmarks: the whole production
stack (gunicorn, RQ workers, the sweeper, an SMTP sink) on databases of their
own, asserting the invariants, not the timings. The benchmarks exit 1 when
an invariant fails; nothing is written to bench/RESULTS.md."""

import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.slow


def _bench(*argv: str) -> str:
    result = subprocess.run([sys.executable, *argv, "--smoke"], cwd=BASE_DIR, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_a_small_flash_sale_oversells_nothing_and_loses_nothing():
    # when: 300 buyers pay for 150 keys, with SKIP LOCKED and with plain FOR UPDATE
    out = _bench("bench/flash_sale.py", "--keys", "150", "--orders", "300", "--claim", "both")
    # then
    verdicts = [line.strip() for line in out.splitlines() if line.strip().startswith("- verdict:")]
    assert verdicts == ["- verdict: OK (no oversell, no key twice, every order DELIVERED or AWAITING_STOCK)"] * 2
    assert out.count("orders: {") == 2 and out.count("keys delivered 150 on 150 lines") == 2


def test_a_small_chaos_run_loses_nothing_and_sends_nothing_twice():
    # when: 120 orders, every notify three times, forged and wrong-amount ones, workers
    # SIGKILLed every 2 s, Redis stopped for 3 s, 30 % of emails refused; the send lease
    # of a killed worker lapses after 15 s (its batches here take well under a second)
    out = _bench("bench/chaos.py", "--orders", "120", "--keys", "120", "--kill-every", "2", "--redis-down", "3",
                 "--rate", "30", "--send-lease", "15", "--drain-timeout", "150")
    # then: the faults happened, and nothing was lost or doubled
    assert "workers SIGKILLed" in out and "Redis stopped (3 s): 1" in out
    assert "- verdict: OK: nothing lost, nothing twice, forged and mismatched changed nothing" in out
    assert "'orders by status': {'DELIVERED': 120}" in out
