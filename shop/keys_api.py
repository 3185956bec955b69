"""Key verification, redemption and licence activation for merchants
(``/api/v1/keys/*``, Bearer merchant API key), the public "check my key"
page, and the buyer's "free this activation slot" button.

Business outcomes answer 200 ``{"valid": false, "code": ...}``; only a
malformed or unauthorised request gets 4xx (the house error shape). Defence
against guessing: django-ratelimit per client IP (before authentication) and
per API key, an escalating cooldown after repeated NOT_FOUND from one source
(``inventory.keyguard``), a miss budget per API key and per client address
that a new ``end_user`` does not reset, and one de-duplicated owner alert when
one source sends many well-formed keys that do not exist within an hour or
uses a miss budget up.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.contrib import messages
from django.db.models import Q
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST
from django_ratelimit.core import is_ratelimited
from django_ratelimit.decorators import ratelimit

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from inventory import redemption as keys
from inventory.apikeys import ApiKeyInvalid, merchant_api_key_authenticate
from inventory.keyguard import (
    key_guard_budget_left,
    key_guard_budget_spend,
    key_guard_cooldown_left,
    key_guard_miss_record,
)
from inventory.models import MerchantApiKey
from riskctl.identity import client_ip
from shop.access import order_for_session
from shop.api import api_error, api_json_object
from shop.models import Product

logger = logging.getLogger(__name__)

MESSAGES = {
    keys.VALID: "The key is valid.",
    keys.ALREADY_REDEEMED: "The key was already redeemed.",
    keys.VOID: "The key was withdrawn by the shop.",
    keys.NOT_SOLD: "The key has not been sold.",
    keys.NOT_FOUND: "No such key.",
    keys.FORMAT_INVALID: "This does not look like a key of this shop.",
    keys.ACTIVATION_DISABLED: "This product's keys are not activated per instance.",
    keys.ACTIVATION_LIMIT_REACHED: "The key is active on as many instances as it may be.",
    keys.INSTANCE_NOT_ACTIVATED: "The key is not active on this instance.",
}
# What a buyer reads on the public page. A key in stock is "not a key of
# this shop" to the public: the page must not tell guessers which keys exist.
# What the public check page tells a buyer, in their language (the codes stay in the API).
BUYER_MESSAGES = {
    keys.VALID: _lazy("This key is genuine and has not been redeemed yet."),
    keys.ALREADY_REDEEMED: _lazy("This key is genuine but was already redeemed on %(date)s."),
    keys.VOID: _lazy("This key was withdrawn by the shop. If you bought it, use “Report a problem” on your order "
                     "page."),
    keys.NOT_FOUND: _lazy("We sold no such key. Check it for typos; if you bought it here, open your order page."),
    keys.FORMAT_INVALID: _lazy("This does not look like one of our keys: %(hint)s."),
}


def _format_hint(result, text: str) -> str:
    """Where a mistyped key goes wrong, in the buyer's words."""
    if result.position:
        return gettext("check character %(position)s (“%(char)s”)") % {
            "position": result.position, "char": text[result.position - 1]}
    if len(text) > keys.MAX_KEY_LENGTH:
        return gettext("it is too long")
    return gettext("it is too short")


API_IP_GROUP = "keys.api.ip"
API_KEY_GROUP = "keys.api.key"
CHECK_PAGE_GROUP = "keys.check.ip"


def _api_rate_per_ip(group, request) -> str:
    return settings.KEY_API_RATE_PER_IP


def _check_rate_per_ip(group, request) -> str:
    return settings.KEY_CHECK_RATE_PER_IP


def _cooldown_error(seconds: int) -> JsonResponse:
    response = api_error("COOLDOWN", "Too many unknown keys; wait before checking again.", 429)
    response["Retry-After"] = str(seconds)
    return response


def _guessing_alert(*, source: str, label: str, body: str) -> None:
    # The source is named, never the keys tried.
    owner_alert_raise(kind=AlertKind.KEY_GUESSING, dedupe_key=f"key-guessing:{source}",
                      subject=f"Possible key guessing from {label}", body=body)


def _budgets(*, api_key: MerchantApiKey, ip: str) -> dict[str, tuple[int, str]]:
    """The miss budgets a merchant call spends, ``source → (limit, label)``.
    Neither depends on ``end_user``: a guesser who sends a new one on every
    call still spends the API key's and the address's budget."""
    budgets = {f"apikey:{api_key.pk}": (settings.KEY_API_MISS_BUDGET_PER_KEY, f"API key {api_key}")}
    if ip:  # no peer address (a unix-socket proxy): one shared budget would lock out everyone
        budgets[f"ip:{ip}"] = (settings.KEY_API_MISS_BUDGET_PER_IP, f"IP {ip} (key API)")
    return budgets


def _miss_record(*, source: str, result: keys.KeyCheck, label: str,
                 budgets: dict[str, tuple[int, str]] | None = None) -> None:
    """Feed the brute-force defence with a NOT_FOUND answer."""
    if result.code != keys.NOT_FOUND:
        return
    outcome = key_guard_miss_record(source=source, well_formed=result.format_ok)
    if outcome.cooldown_seconds:
        logger.warning("key checks from %s cooled down for %ss after %s misses", label, outcome.cooldown_seconds,
                       outcome.misses)
    if outcome.alert:
        _guessing_alert(source=source, label=label, body=(
            f"{outcome.guesses_this_hour} well-formed keys that do not exist were checked from {label} "
            "within the last hour. Revoke the API key or block the address if this is not expected."))
    budgets = budgets or {}
    for spent in key_guard_budget_spend(budgets={name: limit for name, (limit, _) in budgets.items()}):
        limit, spent_label = budgets[spent]
        window = settings.KEY_API_MISS_BUDGET_SECONDS
        logger.warning("key checks from %s cooled down for %ss: %s misses within %ss", spent_label, window, limit,
                       window)
        _guessing_alert(source=spent, label=spent_label, body=(
            f"{limit} keys that do not exist were checked from {spent_label} within {window} seconds, "
            f"whatever end user the merchant named; its key checks are paused for {window} seconds. "
            "Revoke the API key or block the address if this is not expected."))


def _result_json(result: keys.KeyCheck) -> dict:
    body = {"valid": result.valid, "code": result.code, "message": MESSAGES[result.code]}
    if result.card_key is not None:
        body["product"] = result.card_key.product.slug
    if result.code == keys.FORMAT_INVALID:
        body["hint"] = (f"check character {result.position}: {result.hint}" if result.position
                        else result.hint)
        body["position"] = result.position
    if result.redemption is not None:
        body["redeemed_at"] = result.redemption.at.isoformat()
        body["redeemer"] = keys.redeemer_mask(result.redemption.redeemer)
    if result.activation_limit:
        body["activations"] = {"used": result.activations_used, "limit": result.activation_limit}
    return body


def _authenticate(request) -> MerchantApiKey | JsonResponse:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return api_error("AUTH_REQUIRED", "Send your merchant API key as 'Authorization: Bearer <key>'.", 401)
    try:
        return merchant_api_key_authenticate(token=token.strip())
    except ApiKeyInvalid as exc:
        return api_error(exc.code, str(exc), 403 if exc.code == "KEY_REVOKED" else 401)


def _body(request, *, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict | JsonResponse:
    body = api_json_object(request)
    if isinstance(body, JsonResponse):
        return body
    missing = [name for name in required if body.get(name) in (None, "") or
               (isinstance(body.get(name), str) and not body[name].strip())]
    if missing:
        return api_error("FIELD_REQUIRED", f"Missing: {', '.join(missing)}.", 400, fields=missing)
    for name in (*required, *optional):
        if name in body and body[name] is not None and not isinstance(body[name], str):
            return api_error("FIELD_INVALID", f"{name} must be a string.", 400, fields=[name])
    limits = {"key": keys.MAX_KEY_LENGTH, "redemption_id": 100, "redeemer": 150, "instance": 200, "end_user": 150}
    # Only this endpoint's fields (strings by now): another endpoint's field may hold anything.
    too_long = [name for name, limit in limits.items()
                if name in (*required, *optional) and len(body.get(name) or "") > limit]
    if too_long:
        return api_error("FIELD_INVALID", f"Too long: {', '.join(too_long)}.", 400, fields=too_long)
    return body  # NUL and lone surrogates: refused by api_json_object


def _merchant_call(request, *, required: tuple[str, ...], optional: tuple[str, ...] = (), call,
                   extra=None) -> JsonResponse:
    """The common path of every /api/v1/keys/* endpoint: limits, auth,
    cooldown, body, then ``call(api_key, body, product_ids)`` → KeyCheck;
    ``extra(result)`` adds fields to a VALID answer."""
    if getattr(request, "limited", False):
        return api_error("RATE_LIMITED", "Too many requests; slow down.", 429)
    api_key = _authenticate(request)
    if isinstance(api_key, JsonResponse):
        return api_key
    if is_ratelimited(request, group=API_KEY_GROUP, key=lambda group, request: str(api_key.pk),
                      rate=settings.KEY_API_RATE_PER_KEY, increment=True):
        return api_error("RATE_LIMITED", "Too many requests for this API key; slow down.", 429)
    body = _body(request, required=required, optional=(*optional, "end_user"))
    if isinstance(body, JsonResponse):
        return body
    # With ``end_user`` (the merchant's id or IP of whoever typed the key) one
    # guessing user is cooled down, not the merchant's whole integration; the
    # API key's and the address's miss budgets hold whatever ``end_user`` says.
    end_user = (body.get("end_user") or "").strip()
    source = f"apikey:{api_key.pk}" + (f":{hashlib.sha256(end_user.encode()).hexdigest()[:16]}" if end_user else "")
    budgets = _budgets(api_key=api_key, ip=client_ip(request))
    if left := max(key_guard_cooldown_left(source=source), key_guard_budget_left(sources=list(budgets))):
        return _cooldown_error(left)
    # An API key for a product is for its variants too (their keys are the product's, by option).
    scope = Product.objects.filter(Q(pk__in=api_key.products.all()) | Q(parent__in=api_key.products.all()))
    product_ids = list(scope.values_list("pk", flat=True))
    result = call(api_key, body, product_ids)
    label = f"API key {api_key}" + (f", end user {end_user[:60]!r}" if end_user else "")
    _miss_record(source=source, result=result, label=label, budgets=budgets)
    payload = _result_json(result)
    if result.valid and extra is not None:
        payload.update(extra(result))
    return JsonResponse(payload)


def _actor(api_key: MerchantApiKey) -> str:
    return f"api:{api_key.prefix}:{api_key.name}"[:150]


@csrf_exempt
@ratelimit(group=API_IP_GROUP, key="ip", rate=_api_rate_per_ip, method=ratelimit.ALL, block=False)
@require_http_methods(["POST"])
def keys_verify(request):
    """POST /api/v1/keys/verify {key}: what the key is (nothing changes)."""
    return _merchant_call(request, required=("key",),
                          call=lambda api_key, body, product_ids: keys.key_check(text=body["key"],
                                                                                 product_ids=product_ids))


@csrf_exempt
@ratelimit(group=API_IP_GROUP, key="ip", rate=_api_rate_per_ip, method=ratelimit.ALL, block=False)
@require_http_methods(["POST"])
def keys_redeem(request):
    """POST /api/v1/keys/redeem {key, redemption_id, redeemer?}: use the key up, once."""

    def call(api_key, body, product_ids):
        return keys.key_redeem(
            text=body["key"], product_ids=product_ids, redemption_id=body["redemption_id"].strip(),
            redeemer=(body.get("redeemer") or "").strip(), api_key_id=api_key.pk, actor=_actor(api_key),
            ip=client_ip(request) or None,
        )

    return _merchant_call(
        request, required=("key", "redemption_id"), optional=("redeemer",), call=call,
        extra=lambda result: {"redemption_id": result.redemption.redemption_id, "replayed": result.replayed},
    )


@csrf_exempt
@ratelimit(group=API_IP_GROUP, key="ip", rate=_api_rate_per_ip, method=ratelimit.ALL, block=False)
@require_http_methods(["POST"])
def keys_activate(request):
    """POST /api/v1/keys/activate {key, instance}: take an activation slot."""

    def call(api_key, body, product_ids):
        return keys.key_activate(text=body["key"], product_ids=product_ids, instance_id=body["instance"].strip(),
                                 actor=_actor(api_key), ip=client_ip(request) or None)

    return _merchant_call(
        request, required=("key", "instance"), call=call,
        extra=lambda result: {"instance": result.activation.instance_id, "replayed": result.replayed},
    )


@csrf_exempt
@ratelimit(group=API_IP_GROUP, key="ip", rate=_api_rate_per_ip, method=ratelimit.ALL, block=False)
@require_http_methods(["POST"])
def keys_validate(request):
    """POST /api/v1/keys/validate {key, instance}: is the key active on this instance?"""
    return _merchant_call(
        request, required=("key", "instance"),
        call=lambda api_key, body, product_ids: keys.key_activation_validate(
            text=body["key"], product_ids=product_ids, instance_id=body["instance"].strip()),
    )


@csrf_exempt
@ratelimit(group=API_IP_GROUP, key="ip", rate=_api_rate_per_ip, method=ratelimit.ALL, block=False)
@require_http_methods(["POST"])
def keys_deactivate(request):
    """POST /api/v1/keys/deactivate {key, instance}: free the instance's slot."""

    def call(api_key, body, product_ids):
        found = keys.key_check(text=body["key"], product_ids=product_ids)
        if found.card_key is None:
            return found
        activation = keys.key_activation_find(text=body["key"], product_ids=product_ids,
                                              instance_id=body["instance"].strip())
        if activation is None:
            return keys.KeyCheck(code=keys.INSTANCE_NOT_ACTIVATED, card_key=found.card_key)
        try:
            keys.key_activation_deactivate(activation_pk=activation.pk, actor=_actor(api_key),
                                           ip=client_ip(request) or None)
        except keys.RedemptionStateError:  # a concurrent deactivation won
            return keys.KeyCheck(code=keys.INSTANCE_NOT_ACTIVATED, card_key=found.card_key)
        return keys.KeyCheck(code=keys.VALID, card_key=found.card_key, activation=activation)

    return _merchant_call(
        request, required=("key", "instance"), call=call,
        extra=lambda result: {"message": "The instance was deactivated.", "instance": result.activation.instance_id},
    )


# --- public page ------------------------------------------------------------------------


@ratelimit(group=CHECK_PAGE_GROUP, key="ip", rate=_check_rate_per_ip, method="POST", block=False)
@require_http_methods(["GET", "POST"])
def key_check_page(request):
    """The buyer's "check my key" page: genuine? redeemed? Never redeems."""
    context = {"submitted": "", "outcome": None, "message": "", "error": ""}
    if request.method == "POST":
        text = (request.POST.get("key") or "").strip()[: keys.MAX_KEY_LENGTH + 1]
        context["submitted"] = text
        source = f"ip:{client_ip(request)}"
        left = key_guard_cooldown_left(source=source)
        if getattr(request, "limited", False) or left:
            context["error"] = gettext("Too many checks from your network. Please wait a few minutes and try again.")
            response = render(request, "shop/key_check.html", context, status=429)
            response["Retry-After"] = str(left or 60)
            return response
        if not text or "\x00" in text:
            context["error"] = gettext("Enter the key you want to check.")
            return render(request, "shop/key_check.html", context, status=400)
        # Every product, also ones no longer for sale: their buyers still hold keys.
        product_ids = list(Product.objects.values_list("pk", flat=True))
        result = keys.key_check(text=text, product_ids=product_ids, loose=True)
        code = keys.NOT_FOUND if result.code == keys.NOT_SOLD else result.code
        _miss_record(source=source, result=result, label=f"IP {client_ip(request)} (check page)")
        date = (date_format(timezone.localtime(result.redemption.at), "DATE_FORMAT")
                if result.redemption is not None else "")
        hint = _format_hint(result, text) if code == keys.FORMAT_INVALID else ""
        context.update(outcome=code, message=BUYER_MESSAGES[code] % {"date": date, "hint": hint})
    return render(request, "shop/key_check.html", context)


# --- the order page's "free this slot" button -------------------------------------------------


@require_POST
def order_activation_deactivate(request, order_no: str, activation_id: int):
    """POST /orders/<order_no>/activations/<id>/deactivate from the order page."""

    order = order_for_session(request, order_no)
    try:
        activation = keys.key_activation_deactivate(
            activation_pk=activation_id, order_id=order.pk, actor="buyer", ip=client_ip(request) or None
        )
    except keys.RedemptionStateError as exc:
        messages.error(request, f"That activation could not be freed ({exc.code}).")
    else:
        messages.success(request, f"Freed the activation on “{activation.instance_id}”.")
    return redirect("shop:order", order_no=order_no)
