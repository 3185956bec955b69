"""How the code is laid out, measured: modules over 400 lines, imports that
run against the apps' direction, and the lines of the paid path.

    .venv/bin/python bench/structure.py [--root DIR] [--paid-path FILE:FUNCTION ...]

Imports go one way, ``exports → payments → shop → riskctl, delivery → inventory``
(DESIGN.md). An import counts as against the direction when a domain module
(not an interface: views, admin, api, forms, urls, jobs, management commands,
template tags, the operator interfaces (shop/ops; before it, the same modules
at the app's root), the worker) of a lower app
imports a higher app. ``shop.project`` is project plumbing (settings, locks),
below every app. The paid path's lines are those of the named functions (by
default, today's), counted with the ast.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

APPS = {"inventory": 1, "riskctl": 2, "delivery": 2, "shop": 3, "payments": 4, "exports": 5}
INTERFACE_PARTS = {"views", "views.py", "admin", "admin.py", "audit.py", "metrics.py", "dashboard.py", "openapi.py", "api.py", "keys_api.py", "forms.py", "buyer_forms.py", "urls.py", "shop_urls.py",
                   "keys_urls.py", "jobs.py", "management", "templatetags", "ops", "worker.py", "twofactor",
                   "adminsite.py", "context_processors.py", "apps.py", "webhook.py"}
PAID_PATH = [
    "payments/services/inbox.py:payment_notices_apply", "payments/services/inbox.py:_notices_apply_isolated",
    "payments/services/paid_path.py:*", "payments/services/notice_paths.py:*",
    "shop/services/fulfilment.py:orders_fulfil", "shop/services/fulfilment.py:order_fulfil",
    "shop/services/fulfilment.py:_review_open", "shop/services/fulfilment.py:orders_hand_over",
    "shop/services/fulfilment.py:_lines_of", "shop/services/fulfilment.py:_order_channels",
    "shop/services/lifecycle.py:orders_move", "shop/services/lifecycle.py:orders_mark_paid",
    "inventory/services/claim.py:keys_claim", "inventory/services/claim.py:_keys_lock_free",
    "inventory/services/claim.py:_keys_deal", "inventory/services/claim.py:line_claim",
]


def modules(root: Path):
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _rank(module: str) -> int | None:
    if module.startswith("shop.project"):
        return 0
    return APPS.get(module.split(".")[0])


def upward_imports(root: Path) -> list[str]:
    found = []
    for path in modules(root):
        relative = path.relative_to(root)
        if set(relative.parts) & INTERFACE_PARTS:
            continue
        own = _rank(".".join(relative.with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                rank = _rank(name)
                if rank is not None and own is not None and rank > own:
                    found.append(f"{relative}:{node.lineno} imports {name}")
    return found


def function_lines(root: Path, specs: list[str]) -> int:
    total = 0
    for spec in specs:
        file, _, name = spec.partition(":")
        path = root / file
        if not path.exists():
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and (name == "*" or node.name == name):
                total += node.end_lineno - node.lineno + 1
                if name == "*":
                    continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--paid-path", nargs="*", default=PAID_PATH, metavar="FILE:FUNCTION")
    args = parser.parse_args()
    big = [(len(p.read_text().splitlines()), p.relative_to(args.root)) for p in modules(args.root)]
    big = sorted((n, p) for n, p in big if n > 400)
    print(f"modules over 400 lines: {len(big)}")
    for n, p in big:
        print(f"  {n:5d} {p}")
    upward = upward_imports(args.root)
    print(f"imports against the direction: {len(upward)}")
    for line in upward:
        print(f"  {line}")
    print(f"paid path: {function_lines(args.root, args.paid_path)} lines in {len(args.paid_path)} named places")


if __name__ == "__main__":
    main()
