import logging

from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.models import Payment, PaymentStatus
from payments.providers import ProviderUnknown, provider_get
from payments.providers.base import CallbackRejected
from payments.services import payment_callback_handle, sandbox_payment_submit

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def provider_notify(request, provider_id: str):
    """Server-to-server payment notification from a provider."""
    try:
        provider = provider_get(provider_id)
    except ProviderUnknown:
        raise Http404("unknown provider") from None
    try:
        notice = provider.parse_callback(request)
    except CallbackRejected as rejected:
        logger.warning("%s callback refused: %s (from %s)", provider_id, rejected.code, request.META.get("REMOTE_ADDR"))
        return provider.reply_rejected(rejected.code)
    outcome = payment_callback_handle(provider_id=provider.id, notice=notice)
    return provider.reply_accepted() if outcome.accepted else provider.reply_rejected(outcome.code)


def sandbox_pay(request, reference: str):
    """The sandbox gateway's pay page. Exists only while the sandbox is enabled."""
    try:
        provider_get("sandbox")
    except ProviderUnknown:
        raise Http404("the sandbox is disabled") from None
    payment = get_object_or_404(Payment.objects.select_related("order"), reference=reference, provider="sandbox")
    if request.method == "POST":
        sandbox_payment_submit(reference=payment.reference)
        return redirect("shop:order", order_no=payment.order.order_no)
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    return render(
        request,
        "payments/sandbox_pay.html",
        {"payment": payment, "order": payment.order, "already_paid": payment.status != PaymentStatus.CREATED},
    )
