"""The catalogue, the FAQ and /favicon.ico."""

from django.http import HttpResponsePermanentRedirect
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET

from shop.profile import faq_entries
from shop.selectors import catalogue_page


def catalogue(request):
    page = catalogue_page(query=request.GET.get("q", ""), category_slug=request.GET.get("c", ""))
    return render(request, "shop/catalogue.html", {"page": page})


def faq(request):
    """The owner's questions and answers, and the contact channels (#contact)."""
    return render(request, "shop/faq.html", {"entries": faq_entries(), "lookup_url": reverse("shop:lookup")})


@require_GET
def favicon(request):
    """/favicon.ico, which browsers and crawlers ask for whatever the page
    says: the static icon (its hashed, long-cached name in production)."""
    return HttpResponsePermanentRedirect(static("shop/favicon.ico"))
