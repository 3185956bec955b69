import logging

from django.conf import settings
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt

from payments.models import Payment, PaymentStatus
from payments.providers import ProviderUnknown, provider_get
from payments.providers.base import CallbackRejected
from payments.providers.sandbox import NotifyMode
from payments.services import payment_notice_receive, sandbox_payment_submit

logger = logging.getLogger(__name__)


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
    payment = get_object_or_404(Payment.objects.select_related("order"), reference=reference, provider="sandbox")
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
