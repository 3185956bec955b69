"""Finding an order again: the lookup page and its emailed link, sign-in links and "all my orders"."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST
from django_ratelimit.core import is_ratelimited
from django_ratelimit.decorators import ratelimit

from shop.access import order_session_grant, session_email_grant, session_emails, session_emails_forget
from shop.buyer_forms import SignInLinkForm
from shop.forms import LookupForm
from shop.services import LookupFailed, lookup_link_consume, lookup_link_request, order_lookup
from shop.services.signin import (
    SIGNIN_LINK_MINUTES,
    SignInFailed,
    orders_for_emails,
    signin_link_consume,
    signin_link_request,
)
from shop.views.headers import ORDER_REFERRER_POLICY, RETRY_AFTER_SECONDS
from shop.views.stock_alerts import _language

LOOKUP_RATE_PER_IP = "10/m"
LOOKUP_RATE_PER_ORDER = "10/h"
SIGNIN_RATE_PER_IP = "10/h"
SIGNIN_RATE_PER_EMAIL = "3/h"

TOO_MANY_ATTEMPTS = gettext_lazy("Too many attempts. Please wait a minute and try again.")


def _lookup_page(request, context: dict, *, status: int = 200, retry_after: int = RETRY_AFTER_SECONDS):
    """The lookup page (both forms, empty unless ``context`` brings them),
    with Retry-After when it answers 429."""
    response = render(request, "shop/lookup.html", {"form": LookupForm(), "signin_form": SignInLinkForm(), **context},
                      status=status)
    if status == 429:
        response["Retry-After"] = str(retry_after)
    return response


def _lookup_limited(request, order_no: str) -> bool:
    by_ip = is_ratelimited(request, group="shop.lookup.ip", key="ip", rate=LOOKUP_RATE_PER_IP, increment=True)
    by_order = is_ratelimited(request, group="shop.lookup.order", key=lambda group, request: order_no.strip(),
                              rate=LOOKUP_RATE_PER_ORDER, increment=True)
    return by_ip or by_order


def lookup(request):
    """Find an order again: number + email + query password, or a link by email.
    Every failure reads the same, whether or not the order or email exists."""
    form = LookupForm(request.POST or None)
    error = notice = None
    status = 200
    if request.method == "POST":
        if _lookup_limited(request, request.POST.get("order_no", "")):
            return _lookup_page(request, {"form": form, "error": TOO_MANY_ATTEMPTS}, status=429)
        if form.is_valid() and "send_link" in request.POST:
            lookup_link_request(order_no=form.cleaned_data["order_no"], email=form.cleaned_data["email"])
            notice = _("If an order with these details exists, we have emailed a sign-in link to its address. "
                       "It works once, for 30 minutes.")
        elif form.is_valid():
            try:
                order = order_lookup(order_no=form.cleaned_data["order_no"], email=form.cleaned_data["email"],
                                     query_password=form.cleaned_data["query_password"])
            except LookupFailed:
                error, status = _("We could not find an order with these details."), 400
            else:
                order_session_grant(request, order.order_no, version=order.link_version)
                return redirect("shop:order", order_no=order.order_no)
        else:
            error, status = _("We could not find an order with these details."), 400
    return _lookup_page(request, {"form": form, "error": error, "notice": notice}, status=status)


@ratelimit(key="ip", rate=LOOKUP_RATE_PER_IP, block=False)
@require_GET
def lookup_link_open(request, token: str):
    if getattr(request, "limited", False):
        return _lookup_page(request, {"error": TOO_MANY_ATTEMPTS}, status=429)
    try:
        order = lookup_link_consume(token=token)
    except LookupFailed:
        return _lookup_page(request, {"error": _("This link has expired or was already used. Ask for a new one.")},
                            status=400)
    order_session_grant(request, order.order_no, version=order.link_version)
    return redirect("shop:order", order_no=order.order_no)


def _signin_limited(request, email: str) -> bool:
    by_ip = is_ratelimited(request, group="shop.signin.ip", key="ip", rate=SIGNIN_RATE_PER_IP, increment=True)
    by_email = is_ratelimited(request, group="shop.signin.email", key=lambda group, request: email.strip().lower(),
                              rate=SIGNIN_RATE_PER_EMAIL, increment=True)
    return by_ip or by_email


@require_POST
def signin_request_view(request):
    """The lookup page's second form: "Email me a sign-in link" for all the
    orders of an email. The same answer whether or not the email has orders."""
    signin_form = SignInLinkForm(request.POST)
    context = {"signin_form": signin_form}
    status = 200
    if _signin_limited(request, request.POST.get("email", "")):
        context["signin_error"], status = _("Too many requests. Please wait an hour and try again."), 429
    elif not signin_form.is_valid():
        status = 400
    else:
        signin_link_request(email=signin_form.cleaned_data["email"], language=_language(request))
        context["signin_notice"] = _("If there are orders for this email, we have sent a link to it. The link "
                                     "works once, for %(minutes)s minutes.") % {"minutes": SIGNIN_LINK_MINUTES}
        context["signin_form"] = SignInLinkForm()
    return _lookup_page(request, context, status=status, retry_after=3600)


@ratelimit(key="ip", rate=LOOKUP_RATE_PER_IP, block=False)
@require_GET
def signin_link_open(request, token: str):
    """The emailed sign-in link: this browser sees every order of the email."""
    if getattr(request, "limited", False):
        return _lookup_page(request, {"signin_error": TOO_MANY_ATTEMPTS}, status=429)
    try:
        email = signin_link_consume(token=token)
    except SignInFailed:
        return _lookup_page(request, {
            "signin_error": _("This sign-in link has expired or was already used. Ask for a new one below."),
        }, status=400)
    session_email_grant(request, email)
    return redirect("shop:my-orders")


@require_GET
def my_orders(request):
    """"All my orders": the orders of the emails this browser signed in with."""
    emails = session_emails(request)
    rows = [
        {"order": order, "lines": list(order.lines.all()), "created": timezone.localtime(order.created_at)}
        for order in orders_for_emails(emails=emails)
    ]
    response = render(request, "shop/my_orders.html", {"emails": emails, "rows": rows})
    add_never_cache_headers(response)
    response["Referrer-Policy"] = ORDER_REFERRER_POLICY
    return response


@require_POST
def my_orders_signout(request):
    """"Sign out of these orders": this browser forgets the emails."""
    session_emails_forget(request)
    messages.success(request, _("You are signed out of these orders on this device."))
    return redirect("shop:my-orders")
