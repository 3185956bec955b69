"""A short run of the failover benchmark: etcd and two Patroni nodes from
Debian's packages (installed by the benchmark when missing), the production
stack on a multi-host DATABASE_URL, the primary's machine SIGKILLed during a
small flash sale. The benchmark exits 1 when a check fails: an acknowledged
payment missing on the new primary, a notice never acknowledged, workers or
the sweeper not back, the audit not clean, or a takeover over 15 s."""

import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def test_the_primary_dies_mid_sale_and_no_acknowledged_payment_is_lost():
    # when: 300 notifies at 60/s, the primary's Patroni and postgres SIGKILLed 2 s in
    with subprocess.Popen([sys.executable, "bench/failover.py", "--smoke"], cwd=BASE_DIR, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as bench:
        try:
            out, err = bench.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            bench.terminate()  # SIGTERM: the benchmark stops the cluster and the stack it started
            out, err = bench.communicate(timeout=60)
            raise AssertionError("the failover smoke took over 300 s:\n" + out[-3000:] + err[-3000:]) from None

    # then
    assert bench.returncode == 0, out[-3000:] + err[-3000:]
    assert "failover: 300 notices, 0 acknowledged payments lost, takeover " in out
    assert "killed node1: " in out and "node2 (" in out
    assert "orders {'DELIVERED': 300}; emails sent 300/300" in out
    assert "  - verdict: OK" in out
