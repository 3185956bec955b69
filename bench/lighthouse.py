"""Lighthouse scores of the buyer pages (accessibility, SEO, best practices),
mobile and desktop presets, in Debian's Chromium, against the shop started
with production-like settings (bench/stack.py: gunicorn, DEBUG off, the demo
products, an order awaiting payment and one delivered).

    .venv/bin/python bench/lighthouse.py [--runs 3] [--no-record]

Installs Lighthouse with npm into .data/node/ the first time (and Debian's
nodejs/npm and chromium with apt-get when they are missing). Prints a table
and appends it to bench/RESULTS.md.

The shop runs over plain http on 127.0.0.1 here. Chromium treats 127.0.0.1 as
a secure context, and Lighthouse's ``is-on-https`` and ``redirects-http``
audits pass for it; no audit is switched off or edited.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import BASE_DIR, Stack, commit, machine, results_report  # noqa: E402

LIGHTHOUSE = "lighthouse@12.8.2"
NODE_DIR = BASE_DIR / ".data" / "node"
CHROME = "/usr/bin/chromium"
REPORTS = BASE_DIR / "test-artifacts" / "lighthouse"
CATEGORIES = ("accessibility", "seo", "best-practices")
TARGETS = {"accessibility": 95, "seo": 90, "best-practices": 95}
PRESETS = ("mobile", "desktop")


def tools_install() -> None:
    """node, npm, chromium from Debian; Lighthouse from npm into .data/node/."""
    missing = [pkg for pkg, exe in (("nodejs", "node"), ("npm", "npm"), ("chromium", CHROME)) if not shutil.which(exe)]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    installed = NODE_DIR / "node_modules" / "lighthouse" / "package.json"
    wanted = LIGHTHOUSE.rpartition("@")[2]
    if not installed.exists() or json.loads(installed.read_text())["version"] != wanted:
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", LIGHTHOUSE],
                       check=True)


def pages(base: str, orders: dict) -> list[dict]:
    product = f"{base}/p/{orders['product']}/"
    return [
        {"name": "catalogue", "url": f"{base}/", "expect": ".pcards .pcard"},
        {"name": "product", "url": product, "expect": "form.checkout"},
        # Buy now with nothing filled in: the page answering with its errors.
        {"name": "checkout-error", "url": product, "prepare": [product], "submit": "button[name=buy]",
         "expect": ".field-error"},
        {"name": "order-unpaid", "url": f"{base}/orders/{orders['unpaid']['order_no']}/",
         "prepare": [base + orders["unpaid"]["link"]], "expect": ".paynow button"},
        {"name": "order-delivered", "url": f"{base}/orders/{orders['paid']['order_no']}/",
         "prepare": [base + orders["paid"]["link"]], "expect": ".keys .key"},
        {"name": "lookup", "url": f"{base}/lookup/", "expect": "form.checkout"},
    ]


def lighthouse_run(*, preset: str, specs: list[dict]) -> list[dict]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"modules": str(NODE_DIR / "node_modules"), "chrome": CHROME, "preset": preset,
                   "reports": str(REPORTS), "pages": specs}, fh)
    result = subprocess.run(["node", str(BASE_DIR / "bench" / "lighthouse_run.mjs"), fh.name],
                            check=False, capture_output=True, text=True, env={**os.environ, "CHROME_PATH": CHROME})
    Path(fh.name).unlink()
    if result.returncode != 0:
        raise RuntimeError(f"lighthouse failed:\n{result.stdout}\n{result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{statistics.median(values):g}" if low == high else f"{statistics.median(values):g} ({low}–{high})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="Lighthouse runs per page and preset")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = parser.parse_args()
    tools_install()
    started = datetime.now(UTC)
    stack = Stack(web_workers=2, rq_workers=1, sweeper=False, name="lighthouse")
    # Before gunicorn starts: WhiteNoise indexes the collected files once, at start.
    stack.manage("collectstatic", "--noinput", "-v", "0")
    with stack:
        stack.manage("demo")
        orders = json.loads(stack.manage_script("bench/lighthouse_setup.py"))
        base = stack.env["SITE_URL"]
        specs = pages(base, orders)
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.runs):
            for preset in PRESETS:
                for row in lighthouse_run(preset=preset, specs=specs):
                    runs.setdefault((row["name"], row["preset"]), []).append(row)
    first = next(iter(runs.values()))[0]
    lines = [
        "", f"## Lighthouse, buyer pages — {started:%Y-%m-%d %H:%M} UTC", "",
        f"- machine: {machine()}; commit {commit()}",
        f"- command: `.venv/bin/python bench/lighthouse.py --runs {args.runs}`",
        (f"- Lighthouse {first['lighthouse']} (Node API, navigation mode), {first['userAgent']}; gunicorn, DEBUG off, "
         f"plain http on 127.0.0.1; {args.runs} runs per page and preset, median (lowest–highest when they differ)"),
        (f"- targets: accessibility ≥ {TARGETS['accessibility']}, SEO ≥ {TARGETS['seo']}, "
         f"best practices ≥ {TARGETS['best-practices']}"), "",
        "| page | preset | accessibility | SEO | best practices | audits not passed (weighted) |",
        "|---|---|---|---|---|---|",
    ]
    missed = []
    for (name, preset), rows in runs.items():
        cells = []
        for category in CATEGORIES:
            values = [row["scores"][category] for row in rows]
            cells.append(spread(values))
            if min(values) < TARGETS[category]:
                missed.append(f"{name} {preset} {category} {min(values)}")
        failing = sorted({f"{f['category']}: {f['id']}" for row in rows for f in row["failed"]})
        lines.append(f"| {name} | {preset} | {' | '.join(cells)} | {', '.join(failing) or '—'} |")
    warnings = sorted({w for rows in runs.values() for row in rows for w in row["warnings"]})
    if warnings:
        lines.append("")
        lines.extend(f"- Lighthouse warning: {w}" for w in warnings)
    lines += ["", f"- verdict: {'all targets met in every run' if not missed else 'missed: ' + '; '.join(missed)}"]
    results_report(lines, record=not args.no_record)


if __name__ == "__main__":
    main()
