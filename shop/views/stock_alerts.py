"""Back in stock: "Email me when it is back" on a sold-out product page, and its unsubscribe link."""

from django.conf import settings
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_ratelimit.decorators import ratelimit

from shop.buyer_forms import StockAlertForm
from shop.models import Product
from shop.services.stock_alerts import (
    StockAlertRefused,
    stock_alert_for_token,
    stock_alert_request,
    stock_alert_unsubscribe,
)

STOCK_ALERT_RATE_PER_IP = "10/h"


def _language(request) -> str:
    return getattr(request, "LANGUAGE_CODE", "") or settings.LANGUAGE_CODE


@ratelimit(group="shop.stock-alert.ip", key="ip", rate=STOCK_ALERT_RATE_PER_IP, method="POST", block=False)
@require_POST
def stock_alert_request_view(request, slug: str):
    """"Email me when it is back" on a sold-out product page."""
    product = get_object_or_404(Product, slug=slug, active=True)
    form = StockAlertForm(request.POST)
    context = {"product": product, "stock_alert_form": form, "stock": 0}
    status = 200
    if getattr(request, "limited", False):
        context["stock_alert_error"], status = _("Too many requests from your network. Please try again in an hour."), 429
    elif not form.is_valid():
        status = 400
    else:
        try:
            asked = stock_alert_request(product=product, email=form.cleaned_data["email"],
                                        language=_language(request))
        except StockAlertRefused:
            return redirect("shop:product", slug=product.slug)  # back in stock meanwhile: buy it
        context["done_email"] = asked.request.email
    response = render(request, "shop/stock_alert.html", context, status=status)
    if status == 429:
        response["Retry-After"] = "3600"
    add_never_cache_headers(response)
    return response


def stock_alert_unsubscribe_view(request, token: str):
    """The link in the email (a page with a button: mail scanners open links)
    and the mail client's one-click POST (RFC 8058)."""
    alert = stock_alert_for_token(token=token)
    if alert is None:
        return render(request, "shop/stock_alert_unsubscribe.html", {"unknown": True}, status=404)
    if request.method == "POST":
        alert = stock_alert_unsubscribe(token=token)
    return render(request, "shop/stock_alert_unsubscribe.html", {"alert": alert, "token": token})
