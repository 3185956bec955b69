"""The order page: its status poll, Pay now, Resend, showing and downloading keys, reporting a key."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST
from django_ratelimit.decorators import ratelimit

from inventory.redemption import activations_for_order
from payments.methods import ProviderUnknown, methods_offered
from payments.models import Refund, RefundStatus
from payments.services import OrderNotPayable, PaymentStartFailed, payment_open
from riskctl.identity import client_ip
from shop.access import (
    order_for_session,
    order_link_matches,
    order_session_allows,
    order_session_grant,
    order_token_matches,
)
from shop.api import resend_rate_per_ip, resend_wait_for_ip, resend_wait_for_order
from shop.forms import KeyReportForm
from shop.models import KeyReportStatus, Order, OrderEventType, OrderStatus
from shop.profile import contact_sentence
from shop.selectors import order_by_number, order_keys, order_timeline
from shop.services import KeyActionRefused, ResendNotAllowed, order_key_report, order_keys_reveal, order_resend
from shop.services.manual import lines_manual
from shop.templatetags.shopfmt import money
from shop.views.headers import ORDER_REFERRER_POLICY, RETRY_AFTER_SECONDS


def _hold_over(order: Order) -> bool:
    """Unpaid, and the stock hold has lapsed (the sweeper will expire it):
    Pay now is gone, the page says so."""
    return (order.status == OrderStatus.PENDING_PAYMENT and order.hold_expires_at is not None
            and order.hold_expires_at <= timezone.now())


def _pay_methods(order: Order, lines) -> list:
    """The methods an unpaid order can still be paid with (Pay now)."""
    if order.status != OrderStatus.PENDING_PAYMENT or _hold_over(order):
        return []
    product = lines[0].product if lines else None
    return methods_offered(product_id=product.pk if product else None, amount=order.amount,
                           parent_id=product.parent_id if product else None)


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
        "manual": lines_manual(lines),
        "review_wait": settings.REVIEW_EXPECTED_WAIT,
        "activations": list(activations_for_order(order_id=order.pk)),
        "report_form": KeyReportForm(),
        "pay_methods": _pay_methods(order, lines),
        "hold_over": _hold_over(order),
        "last_method": order.payments.order_by("-id").values_list("provider", flat=True).first(),
    }


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
