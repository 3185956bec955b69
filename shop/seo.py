"""What search engines and link previews read: /robots.txt (the page tags,
description, canonical and Open Graph, are in templates/base.html and
shop/templatetags/seo.py)."""

from django.http import HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

# Pages a crawler has no business fetching: staff pages, the JSON APIs, the
# payment callbacks and pay pages, the one-time sign-in links (a fetch would
# use one up) and the language switch. Order pages are not listed: without
# the buyer's session they answer 404 to anyone, crawlers included.
ROBOTS_DISALLOW = ["/admin/", "/api/", "/payments/", "/lookup/link/", "/i18n/"]


@require_GET
@cache_control(max_age=86_400, public=True)
def robots_txt(request):
    lines = ["User-agent: *", *(f"Disallow: {path}" for path in ROBOTS_DISALLOW)]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")
