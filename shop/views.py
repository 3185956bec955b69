"""Buyer pages: catalogue, product + checkout, order page; and /healthz."""

from django.conf import settings
from django.db import connection
from django.http import Http404, JsonResponse
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_ratelimit.decorators import ratelimit
from redis import Redis
from rq import Queue

from payments.providers import ProviderUnknown
from payments.services import checkout_start_payment
from riskctl.identity import client_ip, device_id
from riskctl.services import CheckoutBlocked
from shop.access import order_link_matches, order_token_matches
from shop.forms import CheckoutForm
from shop.models import Order, Product
from shop.selectors import order_keys, product_stock, products_for_sale
from shop.api import resend_limited_for_order, resend_rate_per_ip
from shop.services import CheckoutError, ResendNotAllowed, order_resend

SESSION_ORDERS = "orders"


def catalogue(request):
    return render(request, "shop/catalogue.html", {"products": products_for_sale()})


@ratelimit(key="ip", rate="20/m", method="POST", block=False)
def product_detail(request, slug: str):
    product = get_object_or_404(Product, slug=slug, active=True)
    form = CheckoutForm(request.POST or None, max_quantity=product.max_per_order)
    error = None
    if request.method == "POST" and getattr(request, "limited", False):
        error = ("RATE_LIMITED", "Too many orders from your network. Please wait a minute and try again.")
    elif request.method == "POST" and form.is_valid():
        try:
            started = checkout_start_payment(
                product_slug=product.slug,
                quantity=form.cleaned_data["quantity"],
                email=form.cleaned_data["email"],
                phone=form.cleaned_data["phone"],
                provider_id=request.POST.get("provider", "sandbox"),
                client_ip=client_ip(request),
                device=device_id(request, request.POST.get("device_id", "")),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
            )
        except CheckoutError as exc:
            error = (exc.code, exc.message)
        except CheckoutBlocked as exc:
            error = (exc.code, f"We cannot take this order. Contact us with reference {exc.ref}.")
        except ProviderUnknown:
            error = ("PROVIDER_UNKNOWN", "This payment method is not available.")
        else:
            _session_grant(request, started.order.order_no)
            return redirect(started.pay_url)
    context = {"product": product, "stock": product_stock(product=product), "form": form, "error": error}
    limited = error is not None and error[0] == "RATE_LIMITED"
    response = render(request, "shop/product.html", context, status=429 if limited else 400 if error else 200)
    if limited:
        response["Retry-After"] = "60"
    return response


def _session_grant(request, order_no: str) -> None:
    orders = request.session.get(SESSION_ORDERS, [])
    if order_no not in orders:
        request.session[SESSION_ORDERS] = [*orders[-49:], order_no]


def _order_for_buyer(request, order_no: str) -> Order:
    """The order, if this browser may see it; otherwise the same 404 whether or
    not the order exists (no order-number probing)."""
    order = Order.objects.filter(order_no=order_no).first()
    if order is not None and order_no in request.session.get(SESSION_ORDERS, []):
        return order
    raise Http404("order not found")


@require_GET
def order_detail(request, order_no: str):
    token, signed = request.GET.get("t"), request.GET.get("s")
    if token or signed:
        order = Order.objects.filter(order_no=order_no).first()
        if order is not None and (
            (token and order_token_matches(order=order, token=token))
            or (signed and order_link_matches(order_no=order_no, signed=signed))
        ):
            _session_grant(request, order_no)
            return redirect("shop:order", order_no=order_no)  # drop the secret from the address bar
    order = _order_for_buyer(request, order_no)
    context = {
        "order": order,
        "lines": order.lines.select_related("product"),
        "events": order.events.order_by("at", "id"),
        "keys": order_keys(order=order),
        "review_wait": settings.REVIEW_EXPECTED_WAIT,
    }
    return render(request, "shop/order.html", context)


@ratelimit(key="ip", rate=resend_rate_per_ip, method="POST", block=False)
@require_POST
def order_resend_request(request, order_no: str):
    """The Resend button: the keys again to the order's own channels."""
    order = _order_for_buyer(request, order_no)
    if getattr(request, "limited", False) or resend_limited_for_order(request, order_no):
        messages.error(request, "You asked for a resend a moment ago. Please wait a while before asking again.")
        return redirect("shop:order", order_no=order_no)
    try:
        resent = order_resend(order_id=order.pk, actor="buyer")
    except ResendNotAllowed as exc:
        messages.error(request, exc.message)
    else:
        if resent:
            messages.success(request, f"On its way again to {order.email}. Check your spam folder too.")
        else:
            messages.info(request, "There is nothing to resend for this order.")
    return redirect("shop:order", order_no=order_no)


@require_GET
def order_status(request, order_no: str):
    """Polled by the order page to refresh itself when something happens."""
    order = _order_for_buyer(request, order_no)
    return JsonResponse({"status": order.status, "events": order.events.count()})


@require_GET
def healthz(request):
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # report, never raise: this page is for monitors
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        # A connection of its own with short timeouts: a hung Redis must not hang the monitor.
        redis = Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        redis.ping()
        checks["redis"] = "ok"
        checks["queues"] = {name: Queue(name, connection=redis).count for name in settings.RQ_QUEUES}
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    healthy = checks["database"] == "ok" and checks["redis"] == "ok"
    return JsonResponse({"status": "ok" if healthy else "unhealthy", **checks}, status=200 if healthy else 503)
