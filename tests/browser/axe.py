"""axe-core in a Playwright page: the accessibility rules a screen-reader or
keyboard user trips over, checked on the page as the buyer sees it.

axe is evaluated through the DevTools protocol (``page.evaluate``), which the
page's Content-Security-Policy does not govern: the shop's CSP stays on, and
the ``page`` fixture still fails a test that trips it. A ``<script>`` tag added
to the page (``add_script_tag``) would be refused by ``script-src 'self'``.
"""

from pathlib import Path

AXE_VERSION = "4.14.1"
AXE_SOURCE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
# axe's impact levels, mildest first.
IMPACTS = ("minor", "moderate", "serious", "critical")


def axe_violations(page, *, at_least: str = "serious") -> list[dict]:
    """The axe violations on ``page`` of impact ``at_least`` or worse, each as
    ``{"id", "impact", "help", "targets"}`` (CSS selectors of the offending nodes)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SOURCE.read_text())
    version = page.evaluate("() => window.axe.version")
    assert version == AXE_VERSION, version
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    floor = IMPACTS.index(at_least)
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "targets": [" ".join(map(str, node["target"])) for node in v["nodes"]]}
        for v in result["violations"]
        if IMPACTS.index(v["impact"] or "minor") >= floor
    ]
