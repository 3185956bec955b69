"""Buyer pages: catalogue, product + checkout, order page, lookup, FAQ; and /healthz."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.db import connection
from django.http import Http404, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST
from django_ratelimit.core import is_ratelimited
from django_ratelimit.decorators import ratelimit
from redis import Redis
from rq import Queue

from delivery.selectors import delivery_oldest_pending_at, sweep_last_run
from inventory.redemption import activations_for_order
from payments.methods import methods_offered
from payments.models import Refund, RefundStatus
from payments.providers import ProviderUnknown
from payments.services import OrderNotPayable, PaymentStartFailed, checkout_start_payment, payment_open
from riskctl.identity import client_ip, device_id
from riskctl.services import CheckoutBlocked
from shop.access import (
    order_for_session,
    order_link_matches,
    order_session_allows,
    order_session_grant,
    order_token_matches,
    session_email_grant,
    session_emails,
    session_emails_forget,
    site_id,
)
from shop.buyer_forms import SignInLinkForm, StockAlertForm
from shop.api import resend_rate_per_ip, resend_wait_for_ip, resend_wait_for_order
from shop.forms import CheckoutForm, KeyReportForm, LookupForm
from shop.models import KeyReportStatus, Order, OrderEventType, OrderStatus, Product
from shop.profile import contact_sentence, faq_entries
from shop.selectors import (
    catalogue_page,
    order_by_number,
    order_keys,
    order_timeline,
    product_sold,
    product_stock,
    products_for_sale,
    products_related,
)
from shop.services import (
    CheckoutError,
    KeyActionRefused,
    LookupFailed,
    ResendNotAllowed,
    lookup_link_consume,
    lookup_link_request,
    order_key_report,
    order_keys_reveal,
    order_lookup,
    order_resend,
    price_quote,
)
from shop.services.signin import (
    SIGNIN_LINK_MINUTES,
    SignInFailed,
    orders_for_emails,
    signin_link_consume,
    signin_link_request,
)
from shop.services.stock_alerts import (
    StockAlertRefused,
    stock_alert_for_token,
    stock_alert_request,
    stock_alert_unsubscribe,
)
from shop.templatetags.shopfmt import money

RETRY_AFTER_SECONDS = 60
LOOKUP_RATE_PER_IP = "10/m"
LOOKUP_RATE_PER_ORDER = "10/h"


def catalogue(request):
    page = catalogue_page(query=request.GET.get("q", ""), category_slug=request.GET.get("c", ""))
    return render(request, "shop/catalogue.html", {"page": page})


def faq(request):
    """The owner's questions and answers, and the contact channels (#contact)."""
    return render(request, "shop/faq.html", {"entries": faq_entries(), "lookup_url": reverse("shop:lookup")})


def _checkout_error_message(exc: CheckoutError) -> str:
    """The buyer's language for the codes a buyer can fix; the service's text otherwise."""
    known = {
        "COUPON_INVALID": _("This coupon code is not valid for this product."),
        "COUPON_EXPIRED": _("This coupon has expired."),
        "COUPON_USED_UP": _("This coupon has been used up."),
        "OUT_OF_STOCK": _("Not enough stock left for this quantity."),
        "QUERY_PASSWORD_SHORT": _("A query password has at least 6 characters."),
        "EMAIL_INVALID": _("Enter a valid email address."),
        "PHONE_INVALID": _("Enter the phone number with digits only, for example +8613800138000."),
        "PRODUCT_NOT_FOUND": _("This product is no longer for sale. Choose another one from the catalogue."),
        "QUANTITY_INVALID": _("Choose a quantity this product allows (see the limit next to the quantity)."),
        "TOO_MANY_UNPAID": _("You already have unpaid orders waiting. Pay one of them (Find my order opens it), "
                             "or wait until its hold ends."),
    }
    return known.get(exc.code, exc.message)


def _method_chosen(request, methods) -> str:
    """The payment method the buyer picked; the only one offered needs no pick."""
    chosen = request.POST.get("method") or request.POST.get("provider", "")
    if not chosen and len(methods) == 1:
        return methods[0].id
    return chosen


@ratelimit(key="ip", rate="20/m", method="POST", block=False)
def product_detail(request, slug: str):
    product = get_object_or_404(Product, slug=slug, active=True)
    form = CheckoutForm(request.POST or None, max_quantity=product.max_per_order)
    methods = methods_offered(product_id=product.pk, amount=product.price)
    error = None
    quote = None
    if request.method == "POST" and getattr(request, "limited", False):
        error = ("RATE_LIMITED", _("Too many orders from your network. Please wait a minute and try again."))
    elif request.method == "POST" and "preview" in request.POST:
        # "Check price": the server's price for this quantity and coupon, no order placed.
        form.is_valid()
        quantity = form.cleaned_data.get("quantity")
        if quantity:
            try:
                quote = price_quote(product=product, quantity=quantity,
                                    coupon_code=form.cleaned_data.get("coupon", ""))
            except CheckoutError as exc:
                error = (exc.code, _checkout_error_message(exc))
        form = CheckoutForm(initial={**request.POST.dict(), "terms": False}, max_quantity=product.max_per_order)
        # The buyer's own password on their own page (sent no-store): checking
        # the price must not make them type it again. Only this re-render.
        form.fields["query_password"].widget.render_value = True
    elif request.method == "POST" and form.is_valid() and not _method_chosen(request, methods):
        error = ("METHOD_REQUIRED", _("Choose how you want to pay."))
    elif request.method == "POST" and form.is_valid():
        try:
            started = checkout_start_payment(
                product_slug=product.slug,
                quantity=form.cleaned_data["quantity"],
                email=form.cleaned_data["email"],
                phone=form.cleaned_data["phone"],
                provider_id=_method_chosen(request, methods),
                client_ip=client_ip(request),
                device=device_id(request, request.POST.get("device_id", "")),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                coupon=form.cleaned_data["coupon"],
                query_password=form.cleaned_data["query_password"],
            )
        except CheckoutError as exc:
            error = (exc.code, _checkout_error_message(exc))
        except CheckoutBlocked as exc:
            error = (exc.code, contact_sentence(
                reachable=_("We cannot take this order. Contact us with reference %(ref)s.") % {"ref": exc.ref},
                unreachable=_("We cannot take this order (reference %(ref)s).") % {"ref": exc.ref}))
        except ProviderUnknown:
            error = ("PROVIDER_UNKNOWN", _("This payment method is not available for this order. "
                                           "Choose another one."))
        except PaymentStartFailed as exc:
            # The order exists and holds its stock: its page offers Pay now.
            order_session_grant(request, exc.order.order_no)
            messages.error(request, _("The payment service did not answer. Press Pay now to try again, "
                                      "or choose another way to pay."))
            return redirect("shop:order", order_no=exc.order.order_no)
        else:
            order_session_grant(request, started.order.order_no)
            return redirect(started.pay_url)
    # One pass over the catalogue gives this product's stock and sold count
    # and the related products' (an inactive product is not in it: counted alone).
    listed = products_for_sale()
    this = next((p for p in listed if p.pk == product.pk), None)
    context = {
        "product": product, "form": form, "error": error, "quote": quote,
        "stock": this.stock if this else product_stock(product=product),
        "sold": this.sold if this else product_sold(product=product),
        "tiers": product.tiers.order_by("min_quantity"), "methods": methods,
        "method_chosen": request.POST.get("method", "") if request.method == "POST" else "",
        "related": products_related(product=product, listed=listed),
    }
    limited = error is not None and error[0] == "RATE_LIMITED"
    status = 429 if limited else 400 if error and quote is None and "preview" not in request.POST else 200
    response = render(request, "shop/product.html", context, status=status)
    if limited:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if request.method == "POST":  # it may show the buyer's query password again: never stored
        add_never_cache_headers(response)
    return response


def _hold_over(order: Order) -> bool:
    """Unpaid, and the stock hold has lapsed (the sweeper will expire it):
    Pay now is gone, the page says so."""
    return (order.status == OrderStatus.PENDING_PAYMENT and order.hold_expires_at is not None
            and order.hold_expires_at <= timezone.now())


def _pay_methods(order: Order, lines) -> list:
    """The methods an unpaid order can still be paid with (Pay now)."""
    if order.status != OrderStatus.PENDING_PAYMENT or _hold_over(order):
        return []
    return methods_offered(product_id=lines[0].product_id if lines else None, amount=order.amount)


def _refund_explained(order: Order, events) -> str:
    """Why a refunded order was refunded and where the money went, in the
    buyer's words (never the staff's note)."""
    if order.status != OrderStatus.REFUNDED:
        return ""
    types = {event.type for event in events}
    refund = Refund.objects.filter(payment__order=order).exclude(status=RefundStatus.FAILED).order_by("-id").first()
    if OrderEventType.DISPUTE_OPENED in types:
        why = _("Your payment was disputed or reversed with the payment provider, so the order was closed.")
    elif OrderEventType.REVIEW_REJECTED in types:
        why = _("We could not complete this order after checking it, so we refunded it.")
    elif OrderEventType.AWAITING_STOCK in types and OrderEventType.DELIVERED not in types:
        why = _("The keys ran out before we could deliver them, so we refunded the order.")
    else:
        why = _("The shop refunded this order.")
    if refund is None:
        return why
    where = {
        RefundStatus.SUCCEEDED: _("%(amount)s went back to where you paid from on %(date)s; banks and wallets can "
                                  "take a few days to show it."),
        RefundStatus.PENDING: _("%(amount)s is on its way back to where you paid from (started %(date)s)."),
    }.get(refund.status, _("%(amount)s is being returned (started %(date)s)."))
    moment = timezone.localtime(refund.completed_at or refund.created_at)
    return f"{why} " + where % {"amount": money(refund.amount, order.currency),
                                 "date": date_format(moment, "DATE_FORMAT")}


def _order_context(order: Order) -> dict:
    keys = order_keys(order=order)
    open_reports = set(order.key_reports.filter(status=KeyReportStatus.OPEN).values_list("card_key_id", flat=True))
    lines = list(order.lines.select_related("product"))
    events = order_timeline(order=order)
    return {
        "order": order,
        "lines": lines,
        "events": events,
        "refund_explained": _refund_explained(order, events),
        "keys": keys,
        "open_reports": open_reports,
        "usage_products": [line.product for line in lines if line.product.display_usage_notes],
        "review_wait": settings.REVIEW_EXPECTED_WAIT,
        "activations": list(activations_for_order(order_id=order.pk)),
        "report_form": KeyReportForm(),
        "pay_methods": _pay_methods(order, lines),
        "hold_over": _hold_over(order),
        "last_method": order.payments.order_by("-id").values_list("provider", flat=True).first(),
    }


ORDER_REFERRER_POLICY = "same-origin"


def _order_link_dead(request):
    """A link that does not open its order (revoked, expired, forged, or an
    unknown order): the same polite page and status either way."""
    response = render(request, "shop/order_link_dead.html", status=404)
    add_never_cache_headers(response)
    response["Referrer-Policy"] = ORDER_REFERRER_POLICY
    return response


@require_GET
def order_detail(request, order_no: str):
    token, signed = request.GET.get("t"), request.GET.get("s")
    if token or signed:
        order = order_by_number(order_no=order_no)
        if order is not None and (
            (token and order_token_matches(order=order, token=token))
            or (signed and order_link_matches(order=order, signed=signed))
        ):
            order_session_grant(request, order_no, version=order.link_version)
            return redirect("shop:order", order_no=order_no)  # drop the secret from the address bar
        if order is None or not order_session_allows(request, order):
            return _order_link_dead(request)
        return redirect("shop:order", order_no=order_no)  # this browser may see it anyway
    try:
        order = order_for_session(request, order_no)
    except Http404:
        # The address copied from another device's address bar: say how to
        # open the order here (the same page whether or not it exists).
        response = render(request, "shop/order_elsewhere.html", {"lookup_url": reverse("shop:lookup")}, status=404)
        add_never_cache_headers(response)
        return response
    context = _order_context(order)
    if remembered := _revealed_in_session(request, order_no) & {key.pk for key in context["keys"]}:
        # Shown again from this session: still a reveal each time, logged as one.
        order_keys_reveal(order_id=order.pk, key_ids=sorted(remembered), ip=client_ip(request),
                          user_agent=request.META.get("HTTP_USER_AGENT", ""))
        context["revealed"] = remembered
    response = render(request, "shop/order.html", context)
    add_never_cache_headers(response)  # it may show keys
    # Explicit, whatever the site-wide default: the page carries its signed
    # link ("Copy link"), and a page's URL must never reach another site
    # (a payment gateway) as a Referer. Not no-referrer: that also sends
    # "Origin: null" on this page's own forms, which CSRF refuses.
    response["Referrer-Policy"] = ORDER_REFERRER_POLICY
    return response


@ratelimit(key="ip", rate="20/m", method="POST", block=False)
@require_POST
def order_pay_request(request, order_no: str):
    """Pay now: hand the buyer to the chosen method again (or another one)."""
    order = order_for_session(request, order_no)
    if getattr(request, "limited", False):
        messages.error(request, _("Too many attempts. Please wait a minute and try again."))
        return redirect("shop:order", order_no=order_no)
    if _hold_over(order):
        messages.info(request, _("The time to pay for this order is over. Place a new order from the product page."))
        return redirect("shop:order", order_no=order_no)
    try:
        pay_url = payment_open(order_id=order.pk, method_id=request.POST.get("method", ""))[1]
    except OrderNotPayable:
        messages.info(request, _("This order can no longer be paid."))
    except ProviderUnknown:
        messages.error(request, _("This payment method is not available for this order. Choose another one."))
    except PaymentStartFailed:
        messages.error(request, _("The payment service did not answer. Try again, or choose another way to pay."))
    else:
        return redirect(pay_url)
    return redirect("shop:order", order_no=order_no)


RESEND_IP_GROUP = "shop.resend.page.ip"
REVEALED_SESSION_PREFIX = "revealed:"


@ratelimit(group=RESEND_IP_GROUP, key="ip", rate=resend_rate_per_ip, method="POST", block=False)
@require_POST
def order_resend_request(request, order_no: str):
    """The Resend button: the keys again to the order's own channels."""
    order = order_for_session(request, order_no)
    if getattr(request, "limited", False):
        wait = resend_wait_for_ip(request, group=RESEND_IP_GROUP)
    else:
        wait = resend_wait_for_order(request, order_no)
    if wait:
        again = timezone.localtime() + timedelta(seconds=wait)
        messages.error(request, _("You asked for a resend a moment ago. You can ask again at %(time)s "
                                  "(in about %(minutes)s min). Meanwhile, check your spam folder.")
                       % {"time": date_format(again, "TIME_FORMAT"), "minutes": max(1, round(wait / 60))})
        return redirect("shop:order", order_no=order_no)
    try:
        resent = order_resend(order_id=order.pk, actor="buyer")
    except ResendNotAllowed as exc:
        messages.error(request, exc.message)
    else:
        if resent:
            messages.success(request, _("On its way again to %(email)s. Check your spam folder too.")
                             % {"email": order.email})
        else:
            messages.info(request, _("There is nothing to resend for this order."))
    return redirect("shop:order", order_no=order_no)


@require_GET
def order_status(request, order_no: str):
    """Polled by the order page: the status and the timeline and keys fragments,
    rendered here so dates and words follow the buyer's language. Keys are
    never in it (they are shown one by one through the reveal POST)."""
    order = order_for_session(request, order_no)
    context = _order_context(order)
    return JsonResponse({
        "status": order.status,
        "status_label": order.get_status_display(),
        "events": len(context["events"]),
        "timeline_html": render_to_string("shop/_timeline.html", context, request=request),
        "keys_html": render_to_string("shop/_keys.html", context, request=request),
    })


def _revealed_in_session(request, order_no: str) -> set[int]:
    return set(request.session.get(f"{REVEALED_SESSION_PREFIX}{order_no}", []))


def _reveals_remember(request, order_no: str, key_ids) -> None:
    """A key the buyer revealed stays revealed in this browser session."""
    request.session[f"{REVEALED_SESSION_PREFIX}{order_no}"] = sorted(
        _revealed_in_session(request, order_no) | set(key_ids))


def _keys_reveal(request, order, key_ids: list[int] | None):
    """Reveal (and log) keys of the order for this request, or the error response."""
    if getattr(request, "limited", False):
        response = JsonResponse({"error": {"code": "RATE_LIMITED", "message": _("Too many requests; slow down.")}},
                                status=429)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return None, response
    try:
        keys = order_keys_reveal(order_id=order.pk, key_ids=key_ids, ip=client_ip(request),
                                 user_agent=request.META.get("HTTP_USER_AGENT", ""))
    except KeyActionRefused:
        return None, JsonResponse({"error": {"code": "KEY_NOT_FOUND", "message": _("This key is not on this order.")}},
                                  status=404)
    _reveals_remember(request, order.order_no, [key.pk for key in keys])
    return keys, None


def _keys_response(request, order, keys, *, one: bool = False):
    if "application/json" in request.headers.get("Accept", ""):
        shown = [{"id": key.pk, "key": key.secret} for key in keys]
        response = JsonResponse(shown[0] if one else {"keys": shown})
    else:  # without JavaScript: the order page with these keys shown
        response = render(request, "shop/order.html",
                          {**_order_context(order), "revealed": _revealed_in_session(request, order.order_no)})
    add_never_cache_headers(response)
    return response


@ratelimit(key="ip", rate="60/m", method="POST", block=False)
@require_POST
def order_key_reveal_request(request, order_no: str, key_id: int):
    """"Show key": one key, logged with time, IP and browser."""
    order = order_for_session(request, order_no)
    keys, refused = _keys_reveal(request, order, [key_id])
    return refused or _keys_response(request, order, keys, one=True)


@ratelimit(key="ip", rate="60/m", method="POST", block=False)
@require_POST
def order_keys_reveal_request(request, order_no: str):
    """"Show all keys": every key of the order, each reveal logged."""
    order = order_for_session(request, order_no)
    keys, refused = _keys_reveal(request, order, None)
    return refused or _keys_response(request, order, keys)


@ratelimit(key="ip", rate="60/m", method="POST", block=False)
@require_POST
def order_keys_download_request(request, order_no: str):
    """"Download .txt": every key of the order as a text file, each reveal logged."""
    order = order_for_session(request, order_no)
    keys, refused = _keys_reveal(request, order, None)
    if refused:
        return refused
    text = "".join(f"{key.product.display_name}\t{key.secret}\r\n" for key in keys)
    response = HttpResponse(f"{order.order_no}\r\n{text}", content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{order.order_no}-keys.txt"'
    add_never_cache_headers(response)
    return response


@ratelimit(key="ip", rate="10/h", method="POST", block=False)
@require_POST
def order_key_report_request(request, order_no: str, key_id: int):
    """"Report a problem with this key": replaced at once where the product allows, else staff look."""
    order = order_for_session(request, order_no)
    if getattr(request, "limited", False):
        messages.error(request, contact_sentence(
            reachable=_("Too many reports from your network. Please contact us instead."),
            unreachable=_("Too many reports from your network. Please wait an hour and try again.")))
        return redirect("shop:order", order_no=order_no)
    form = KeyReportForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        report = order_key_report(order_id=order.pk, key_id=key_id, reason=reason, ip=client_ip(request))
    except KeyActionRefused as exc:
        messages.error(request, _("This key was already reported; we will reply by email.")
                       if exc.code == "ALREADY_REPORTED" else _("This key is not on this order."))
    else:
        if report.status == KeyReportStatus.REPLACED:
            messages.success(request, _("Sorry about that. The key was replaced: press Show key to see the new one."))
        else:
            messages.info(request, _("Thank you. Our staff will check the key and reply to %(email)s.")
                          % {"email": order.email})
    return redirect("shop:order", order_no=order_no)


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


# /healthz is unhealthy once the sweeper's last run is this many intervals old.
SWEEP_OVERDUE_INTERVALS = 5


@require_GET
def favicon(request):
    """/favicon.ico, which browsers and crawlers ask for whatever the page
    says: the static icon (its hashed, long-cached name in production)."""
    return HttpResponsePermanentRedirect(static("shop/favicon.ico"))


@require_GET
def healthz(request):
    """For monitors: 200 when PostgreSQL and Redis answer and the sweeper runs; else 503."""
    checks = {}
    healthy = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # report, never raise: this page is for monitors
        checks["database"] = f"error: {type(exc).__name__}"
        healthy = False
    try:
        # A connection of its own with short timeouts: a hung Redis must not hang the monitor.
        redis = Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        redis.ping()
        checks["redis"] = "ok"
        checks["queues"] = {name: Queue(name, connection=redis).count for name in settings.RQ_QUEUES}
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
        healthy = False
    if checks["database"] == "ok":
        now = timezone.now()
        oldest = delivery_oldest_pending_at()
        checks["oldest_pending_delivery_seconds"] = None if oldest is None else int((now - oldest).total_seconds())
        run = sweep_last_run()
        last = run.finished_at or run.started_at if run is not None else None
        age = None if last is None else int((now - last).total_seconds())
        # Never run yet (a fresh install whose worker is starting) is not overdue.
        overdue = age is not None and age > SWEEP_OVERDUE_INTERVALS * settings.SWEEP_INTERVAL_SECONDS
        checks["sweeper"] = {
            "status": "never run" if run is None else "overdue" if overdue else "ok",
            "last_run_at": None if last is None else last.isoformat(),
            "age_seconds": age,
        }
        healthy = healthy and not overdue
    return JsonResponse({"status": "ok" if healthy else "unhealthy", "site": site_id(), **checks},
                        status=200 if healthy else 503)


# --- back in stock, and "all my orders" (helper C) -------------------------------

STOCK_ALERT_RATE_PER_IP = "10/h"
SIGNIN_RATE_PER_IP = "10/h"
SIGNIN_RATE_PER_EMAIL = "3/h"


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
