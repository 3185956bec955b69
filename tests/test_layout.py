"""The layout the code promises (README, "Where things live"): no app module
over 400 lines, imports that run one way, and every row lock of the paid
path's three tables in the one module that states their order."""

import re
from pathlib import Path

from bench.structure import modules, upward_imports

ROOT = Path(__file__).resolve().parent.parent
LOCKED_MODELS = re.compile(r"\b(Payment|Order|CardKey)\.objects\b[^\n]*select_for_update|"
                           r"\b(Payment|Order|CardKey)\.objects\.select_for_update")


def test_no_app_module_is_over_400_lines():
    big = [str(p.relative_to(ROOT)) for p in modules(ROOT) if len(p.read_text().splitlines()) > 400]
    assert big == []


def test_no_domain_module_imports_a_higher_app():
    assert upward_imports(ROOT) == []


def test_payments_orders_and_keys_are_locked_only_through_the_lock_module():
    lockers = [str(p.relative_to(ROOT)) for p in modules(ROOT)
               if p.name != "locks.py" and LOCKED_MODELS.search(p.read_text())]
    assert lockers == []


def test_timeline_events_are_built_only_in_the_events_module():
    builders = [str(p.relative_to(ROOT)) for p in modules(ROOT)
                if p.name != "events.py" and "models" not in p.parts
                and re.search(r"\bOrderEvent(\(|\.objects\.(create|bulk_create))", p.read_text())]
    assert builders == []


def test_order_status_changes_only_in_the_lifecycle_module():
    # an UPDATE of the order's status anywhere else would skip the state machine's check
    movers = [str(p.relative_to(ROOT)) for p in modules(ROOT)
              if p.name != "lifecycle.py" and re.search(r"Order\.objects[^\n]*\.update\([^)]*\bstatus=", p.read_text())]
    assert movers == []
