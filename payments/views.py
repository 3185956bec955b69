import logging
import re

import segno
from django.conf import settings
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from payments.methods import ProviderUnknown, methods_all, provider_get
from payments.models import Payment, PaymentStatus
from payments.providers.base import CallbackRejected, PayAction, PayActionKind
from payments.providers.sandbox import NotifyMode
from payments.services import payment_notice_receive, sandbox_payment_submit
from shop.access import SESSION_ORDERS
from shop.models import OrderStatus

logger = logging.getLogger(__name__)

# What a payment reference looks like: an order number, and for a second
# attempt "-" and a suffix (payments/services/checkout.py), within the
# column's 40 characters.
REFERENCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}")


def _payment_or_404(reference: str, **filters) -> Payment:
    """The payment behind a pay page's URL. A reference not in the shop's
    format (NUL, surrogates, too long) is a 404 without a query: PostgreSQL
    refuses NUL with an error."""
    if not REFERENCE_RE.fullmatch(reference):
        raise Http404("no such payment")
    return get_object_or_404(Payment.objects.select_related("order"), reference=reference, **filters)


# Never rate-limited: a gateway retries from a handful of addresses, and a
# throttled notify is a payment the shop does not see.
@csrf_exempt
def provider_notify(request, provider_id: str):
    """Server-to-server payment notification from a provider."""
    try:
        provider = provider_get(provider_id)
    except ProviderUnknown:
        raise Http404("unknown provider") from None
    if request.method not in provider.notify_methods:
        return HttpResponseNotAllowed(provider.notify_methods)
    try:
        notice = provider.parse_callback(request)
    except CallbackRejected as rejected:
        logger.warning("%s callback refused: %s (from %s)", provider_id, rejected.code, request.META.get("REMOTE_ADDR"))
        return provider.reply_rejected(rejected.code)
    if notice is None:  # authentic, but nothing the shop acts on
        return provider.reply_accepted()
    outcome = payment_notice_receive(provider_id=provider.id, notice=notice)
    return provider.reply_accepted() if outcome.accepted else provider.reply_rejected(outcome.code)


def sandbox_pay(request, reference: str):
    """The sandbox gateway's pay page. Exists only while the sandbox is enabled."""
    try:
        provider_get("sandbox")
    except ProviderUnknown:
        raise Http404("the sandbox is disabled") from None
    payment = _payment_or_404(reference, provider="sandbox")
    if request.method == "POST":
        mode = request.POST.get("mode", settings.SANDBOX_NOTIFY_MODE)
        sandbox_payment_submit(reference=payment.reference, mode=mode)
        return redirect("shop:order", order_no=payment.order.order_no)
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    return render(
        request,
        "payments/sandbox_pay.html",
        {
            "payment": payment, "order": payment.order, "already_paid": payment.status != PaymentStatus.CREATED,
            "modes": NotifyMode.CHOICES, "default_mode": settings.SANDBOX_NOTIFY_MODE,
        },
    )


def _payment_settled(payment: Payment) -> bool:
    """Nothing left to pay here: this payment went through, or the order was
    paid another way, or it is closed."""
    return payment.status != PaymentStatus.CREATED or payment.order.status not in (
        OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED)


@never_cache
@require_GET
def pay_page(request, reference: str):
    """The shop's own pay page: the QR code of 当面付, WeChat Native and USDT
    (rendered here, never by a third party), or the auto-submitted form of a
    gateway that wants a POST. It shows the amount and the hold's countdown
    and moves to the order page by itself once paid. It reveals nothing but
    what is needed to pay."""
    payment = _payment_or_404(reference)
    if not payment.pay_action:
        raise Http404("no pay page for this payment")
    action = PayAction.from_json(payment.pay_action)
    order = payment.order
    has_session = order.order_no in request.session.get(SESSION_ORDERS, [])
    settled = _payment_settled(payment)
    if settled and has_session:
        return redirect("shop:order", order_no=order.order_no)
    if action.kind == PayActionKind.REDIRECT and not settled:
        return redirect(action.url)
    method = next((m for m in methods_all() if m.id == payment.provider), None)
    qr_svg = ""
    if action.kind == PayActionKind.QR and action.qr:
        qr_svg = segno.make(action.qr, error="m").svg_inline(scale=6, border=2, dark="#111", omitsize=True)
    return render(request, "payments/pay.html", {
        "payment": payment, "order": order, "action": action, "method": method, "qr_svg": qr_svg,
        "settled": settled, "has_session": has_session,
        "order_url": reverse("shop:order", args=[order.order_no]),
        "status_url": reverse("payments:pay-status", args=[payment.reference]),
    })


@never_cache
@require_GET
def pay_status(request, reference: str):
    """Polled by the pay page: has this payment gone through?"""
    payment = _payment_or_404(reference)
    return JsonResponse({"paid": _payment_settled(payment)})
