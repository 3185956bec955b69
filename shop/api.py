"""JSON API v1 (contract in DESIGN.md). Errors: {"error": {"code", "message", "ref"}}."""

import json
import logging
import uuid

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.validators import slug_re
from django.http import JsonResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from django_ratelimit.core import get_usage
from django_ratelimit.decorators import ratelimit

from payments.methods import ProviderUnknown, methods_offered
from payments.services import PaymentStartFailed, checkout_start_payment
from riskctl.identity import client_ip, device_id
from riskctl.services import CheckoutBlocked
from shop.access import order_token_matches
from shop.checkout_limits import checkout_limit_reached
from shop.models import Order, Product, ProductKind
from shop.selectors import manual_fields_by_product, order_by_number, order_keys, products_for_sale
from shop.services import CheckoutError, ResendNotAllowed, order_resend

logger = logging.getLogger(__name__)

_CHECKOUT_STATUS = {"PRODUCT_NOT_FOUND": 404, "VARIANT_NOT_FOUND": 404, "OUT_OF_STOCK": 409, "TOO_MANY_UNPAID": 409}


# Seconds a rate-limited client is told to wait (the limits are per minute or longer).
RETRY_AFTER_SECONDS = 60


def api_error(code: str, message: str, status: int, **extra) -> JsonResponse:
    ref = uuid.uuid4().hex[:12]
    logger.info("api error %s %s ref=%s", status, code, ref)
    response = JsonResponse({"error": {"code": code, "message": message, "ref": ref, **extra}}, status=status)
    if status == 429:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


# The API's bodies are a few hundred bytes; larger ones are refused before parsing.
API_BODY_MAX_BYTES = 64 * 1024
# Deeper bodies are refused before json.loads, whose recursion ends in a
# RecursionError (a 500) somewhere below a thousand levels.
API_JSON_MAX_DEPTH = 32


def text_storable(value: str) -> bool:
    """Whether PostgreSQL can store ``value``: text columns refuse NUL, and a
    lone surrogate (JSON's "\\ud800" decodes to one) has no UTF-8 form."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_nesting_exceeds(text: str, limit: int) -> bool:
    """Whether the brackets outside strings nest deeper than ``limit``: one
    pass, no recursion, and none at all for a body with few brackets."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _unstorable_fields(body: dict) -> list[str]:
    """The top-level fields whose name or value (at any depth) holds text
    PostgreSQL cannot store."""
    fields = []
    for name, value in body.items():
        pending = [name, value]
        while pending:
            item = pending.pop()
            if isinstance(item, str) and not text_storable(item):
                fields.append(name)
                break
            if isinstance(item, dict):
                pending.extend(item.items())
            elif isinstance(item, (list, tuple)):
                pending.extend(item)
    return fields


def api_json_object(request) -> dict | JsonResponse:
    """The request body as a JSON object, or the error to answer: BODY_TOO_LARGE
    (413), BAD_JSON (not UTF-8 JSON, not an object, nested deeper than
    API_JSON_MAX_DEPTH) or FIELD_INVALID (NUL or a lone surrogate in any
    string). Every value from here on can go to PostgreSQL as it is."""
    try:
        raw = request.body
    except RequestDataTooBig:  # over Django's DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = None
    if raw is None or len(raw) > API_BODY_MAX_BYTES:
        return api_error("BODY_TOO_LARGE", f"The body may be at most {API_BODY_MAX_BYTES} bytes.", 413)
    try:
        # As json.loads(bytes) decodes: UTF-8/16/32 detected, surrogates passed
        # through (text_storable refuses them below, naming the field).
        text = raw.decode(json.detect_encoding(raw), "surrogatepass") if raw else "null"
    except UnicodeDecodeError:
        return api_error("BAD_JSON", "The body must be a JSON object.", 400)
    if _json_nesting_exceeds(text, API_JSON_MAX_DEPTH):
        return api_error("BAD_JSON", f"The body may nest at most {API_JSON_MAX_DEPTH} levels deep.", 400)
    try:
        body = json.loads(text)
    except ValueError:
        return api_error("BAD_JSON", "The body must be a JSON object.", 400)
    if not isinstance(body, dict):
        return api_error("BAD_JSON", "The body must be a JSON object.", 400)
    if fields := _unstorable_fields(body):
        storable = [name for name in fields if text_storable(name)]
        return api_error("FIELD_INVALID", "Text may not contain NUL characters or unpaired surrogates.", 400,
                         fields=storable)
    return body


def _money(value) -> str:
    return f"{value:.2f}"


def _manual_field_json(f) -> dict:
    return {"key": f.key, "label": f.display_label, "type": f.type, "required": f.required,
            "choices": f.choice_list, "max_length": f.max_length,
            "min": None if f.min_value is None else str(f.min_value),
            "max": None if f.max_value is None else str(f.max_value), "pattern": f.pattern or None,
            "help": f.display_help_text}


def _questions(p: Product, fields: dict) -> dict:
    """``fields``, a manual product's (or variant's, else its product's) questions; nothing for other kinds."""
    if p.kind != ProductKind.MANUAL:
        return {}
    return {"fields": [_manual_field_json(f) for f in fields.get(p.pk) or fields.get(p.parent_id) or ()]}


def _product_json(p: Product, fields: dict) -> dict:
    """One product as the API lists it: ``name`` in the request's language
    (Accept-Language; the other one when that side is empty), both sides as
    ``name_en`` / ``name_zh``, and absolute picture URLs (null without one).
    ``stock`` is null for a reusable product without a sales cap and for a
    manual product (no limit); ``fields``, a manual product's only: its questions.
    A product with variants is ordered through one of ``variants`` (its
    ``id``); its ``price`` is the cheapest one's and its ``stock`` theirs together."""
    return {
        "slug": p.slug, "name": p.display_name, "kind": p.kind, "price": _money(p.price_from),
        "currency": p.currency, "stock": None if p.stock_unlimited else p.stock,
        "variants": [{"id": v.pk, "name": v.variant_name, "name_en": v.name, "name_zh": v.name_zh, "kind": v.kind,
                      "price": _money(v.price), "stock": None if v.stock_unlimited else v.stock,
                      "max_per_order": v.max_per_order, **_questions(v, fields)}
                     for v in p.variants_for_sale],
        "name_en": p.name, "name_zh": p.name_zh, "sold": p.sold,
        "category": p.category.slug if p.category_id else None,
        "image": settings.SITE_URL + p.image.url if p.image else None,
        "thumbnail": settings.SITE_URL + p.thumb_url if p.image_thumb else None,
        **_questions(p, fields),
    }


@require_GET
def products(request):
    listed = products_for_sale()
    fields = manual_fields_by_product(products=listed + [v for p in listed for v in p.variants_for_sale])
    response = JsonResponse([_product_json(p, fields) for p in listed], safe=False)
    patch_vary_headers(response, ["Accept-Language"])  # ``name`` follows it
    return response


@csrf_exempt
@require_http_methods(["POST"])
def orders_create(request):
    body = api_json_object(request)
    submitted = body if isinstance(body, dict) else {}
    if limited := checkout_limit_reached(request, email=submitted.get("email"), device=submitted.get("device_id")):
        network = " from your network" if limited.scope == "ADDRESS" else ""
        response = api_error("RATE_LIMITED", f"Too many requests{network}; slow down.", 429)
        response["Retry-After"] = str(limited.retry_after)
        return response
    if isinstance(body, JsonResponse):
        return body
    missing = [name for name in ("product", "quantity", "email") if body.get(name) in (None, "")]
    if missing:
        return api_error("FIELD_REQUIRED", f"Missing: {', '.join(missing)}.", 400, fields=missing)
    quantity = body["quantity"]
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        return api_error("QUANTITY_INVALID", "quantity must be a whole number.", 400, fields=["quantity"])
    for name in ("product", "email", "phone", "provider", "method", "device_id", "coupon"):
        if name in body and body[name] is not None and not isinstance(body[name], str):
            return api_error("FIELD_INVALID", f"{name} must be a string.", 400, fields=[name])
    variant = body.get("variant")
    if variant is not None and (isinstance(variant, bool) or not isinstance(variant, int)):
        return api_error("FIELD_INVALID", "variant must be a variant's id (a whole number).", 400, fields=["variant"])
    if body.get("fields") is not None and not isinstance(body["fields"], dict):
        return api_error("FIELD_INVALID", "fields must be an object of answers by field key.", 400, fields=["fields"])
    try:
        started = checkout_start_payment(
            product_slug=body["product"],
            quantity=quantity,
            email=body["email"],
            phone=body.get("phone") or "",
            provider_id=body.get("provider") or body.get("method") or "sandbox",
            client_ip=client_ip(request),
            device=device_id(request, body.get("device_id") or ""),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            coupon=body.get("coupon") or "",
            variant=variant,
            fields=body.get("fields"),
        )
    except ProviderUnknown:
        return api_error("PROVIDER_UNKNOWN", "Unknown or disabled payment method, or not offered for this product "
                         "and amount: GET /api/v1/payment-methods lists them.", 400, fields=["provider"])
    except PaymentStartFailed as exc:
        return api_error(exc.code, "The payment provider did not answer; the order was not opened for payment. "
                         "Try again or use another method.", 503, order_no=exc.order.order_no)
    except CheckoutBlocked as exc:
        return api_error(exc.code, f"This order cannot be taken. Quote {exc.ref} to the shop.", 403)
    except CheckoutError as exc:
        fields = [exc.field] if exc.field else []
        return api_error(exc.code, exc.message, _CHECKOUT_STATUS.get(exc.code, 400), fields=fields)
    order = started.order
    return JsonResponse(
        {
            "order_no": order.order_no,
            "token": started.token,
            "status": order.status,
            "amount": _money(order.amount),
            "currency": order.currency,
            "pay_url": request.build_absolute_uri(started.pay_url),
            "pay": _pay_action(started),
        },
        status=201,
    )


def _pay_action(started) -> dict:
    """How to pay, for integrators who render it themselves: the kind
    (REDIRECT, FORM, QR) and, for a QR code, its content and the amount to
    send (USDT: the wallet address and the USDT amount)."""
    action = started.action
    pay = {"kind": action.kind, "method": started.payment.provider, "amount": _money(started.payment.amount),
           "currency": started.payment.currency}
    if action.kind == "QR":
        pay["qr"] = action.qr
        if action.app_url:
            pay["app_url"] = action.app_url
    if action.currency and action.currency != started.payment.currency:
        pay.update(amount=action.amount, currency=action.currency)
    if action.address:
        pay["address"] = action.address
    return pay


@require_GET
def payment_methods(request):
    """The payment methods a buyer may use, for a product when ``?product=`` is given."""
    product_id = amount = parent_id = None
    if slug := request.GET.get("product"):
        product = Product.objects.filter(slug=slug, active=True).first() if slug_re.fullmatch(slug) else None
        if product is None:
            return api_error("PRODUCT_NOT_FOUND", "No product with this slug.", 404, fields=["product"])
        product_id, amount, parent_id = product.pk, product.price, product.parent_id
    return JsonResponse([
        {"id": m.id, "name": m.display_name, "provider": m.provider, "channel": m.channel, "icon": m.icon,
         "fee": m.fee_text}
        for m in methods_offered(product_id=product_id, amount=amount, parent_id=parent_id)
    ], safe=False)


def _order_by_bearer(request, order_no: str) -> tuple[Order | None, JsonResponse | None]:
    """The order whose token the request carries as ``Authorization: Bearer``,
    or the error to answer. An unknown order and a wrong token look the same:
    no probing for order numbers."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None, api_error("AUTH_REQUIRED", "Send the order's token as 'Authorization: Bearer <token>'.", 401)
    order = order_by_number(order_no=order_no)
    if order is None or not order_token_matches(order=order, token=token.strip()):
        return None, api_error("ORDER_NOT_FOUND", "No order with this number and token.", 404)
    return order, None


@ratelimit(key="ip", rate="60/m", block=False)
@require_GET
def order_read(request, order_no: str):
    if getattr(request, "limited", False):
        return api_error("RATE_LIMITED", "Too many requests; slow down.", 429)
    order, refused = _order_by_bearer(request, order_no)
    if refused:
        return refused
    return JsonResponse(
        {
            "order_no": order.order_no,
            "status": order.status,
            "quantity": sum(line.quantity for line in order.lines.all()),
            "amount": _money(order.amount),
            "currency": order.currency,
            "keys": [key.secret for key in order_keys(order=order)],
            "events": [{"type": e.type, "at": e.at.isoformat()} for e in order.events.order_by("at", "id")],
        }
    )


RESEND_GROUP = "shop.resend.order"


def resend_rate_per_ip(group, request) -> str:
    return settings.RESEND_RATE_PER_IP


def resend_wait_for_order(request, order_no: str) -> int:
    """Count a resend of this order (web page and API share the budget) and
    say how many seconds the buyer must wait before the next one (0: go on).
    Counted only once the buyer proved access, so strangers cannot use up a
    buyer's resends."""
    usage = get_usage(request, group=RESEND_GROUP, key=lambda group, request: order_no,
                      rate=settings.RESEND_RATE_PER_ORDER, increment=True)
    return _wait_seconds(usage)


def resend_wait_for_ip(request, group: str) -> int:
    """The seconds left before this address may resend again, under the
    per-address limit counted by the view's ``@ratelimit`` (``group``)."""
    # method as the decorator counts it: it is part of the counter's cache key.
    usage = get_usage(request, group=group, key="ip", rate=settings.RESEND_RATE_PER_IP, method="POST",
                      increment=False)
    return _wait_seconds(usage) or 60


def _wait_seconds(usage: dict | None) -> int:
    if usage is None or not usage["should_limit"]:  # None: the cache is down and limits fail open
        return 0
    # time_left is -1 when the count could not be read (the limit then fails closed): a minute.
    return usage["time_left"] if usage["time_left"] > 0 else 60


@csrf_exempt
@ratelimit(key="ip", rate=resend_rate_per_ip, method="POST", block=False)
@require_http_methods(["POST"])
def order_resend_request(request, order_no: str):
    """POST /api/v1/orders/<order_no>/resend: the keys again to the order's own channels."""
    if getattr(request, "limited", False):
        return api_error("RATE_LIMITED", "Too many resend requests from your network; try again later.", 429)
    order, refused = _order_by_bearer(request, order_no)
    if refused:
        return refused
    if wait := resend_wait_for_order(request, order_no):
        response = api_error("RATE_LIMITED", f"This order was resent recently; try again in {wait} s.", 429)
        response["Retry-After"] = str(wait)
        return response
    try:
        resent = order_resend(order_id=order.pk, actor="buyer")
    except ResendNotAllowed as exc:
        return api_error(exc.code, exc.message, 409)
    channels = sorted(order.deliveries.filter(pk__in=resent).values_list("channel", flat=True))
    return JsonResponse({"order_no": order.order_no, "resent": channels}, status=202)
