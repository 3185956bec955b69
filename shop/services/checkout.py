"""Checkout: validate, assess the buyer, hold stock, create the order."""

from __future__ import annotations

import functools
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import get_language

from delivery.alerts import owner_alert_raise
from delivery.models import AlertKind
from inventory.selectors import keys_available_count
from inventory.services import keys_hold, keys_holds_release
from riskctl.identity import BuyerContext, email_normalise, phone_normalise
from riskctl.services import (
    CheckoutBlocked,
    LimitExceeded,
    assessment_attach,
    checkout_assess,
)
from shop.access import order_token_new
from shop.models import (
    Coupon,
    CouponKind,
    Order,
    OrderLine,
    OrderStatus,
    Product,
    ProductKind,
)
from shop.project.inserts import rows_insert_unless_taken
from shop.selectors import product_for_checkout, product_holds, product_tiers, reusable_left
from shop.services.checkout_errors import CheckoutError
from shop.services.events import event_created, events_save
from shop.services.manual import manual_answers_clean, manual_answers_save
from shop.services.unpaid_cap import unpaid_orders_cap_check
from shop.services.variants import variant_chosen

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlacedOrder:
    order: Order
    token: str  # shown to the buyer once; only its hash is stored


def _order_no_new() -> str:
    """Date plus 8 random digits: easy to read out over the phone, hard to guess."""
    return f"{timezone.localdate():%y%m%d}{secrets.randbelow(10**8):08d}"


CENT = Decimal("0.01")
QUERY_PASSWORD_MIN_LENGTH = 6


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class PriceQuote:
    """What an order costs, computed on the server only."""

    unit_price: Decimal        # the list price
    quantity: int
    subtotal: Decimal          # unit_price × quantity
    tier_percent: Decimal      # wholesale tier applied (0: none)
    tier_discount: Decimal
    coupon_code: str           # "" without a coupon
    coupon_discount: Decimal
    amount: Decimal            # what the buyer pays
    coupon_id: int | None = field(default=None, compare=False)

    @property
    def discount(self) -> Decimal:
        return self.tier_discount + self.coupon_discount


def coupon_code_normalise(code: str) -> str:
    return (code or "").strip().upper()


def _coupon_usable(*, code: str, product: Product, now: datetime) -> Coupon:
    coupon = Coupon.objects.filter(code=code, active=True).first()
    # A coupon for a product is good for each of its variants too.
    meant = [pk for pk in (product.pk, product.parent_id) if pk is not None]
    if coupon is None or (coupon.products.exists() and not coupon.products.filter(pk__in=meant).exists()):
        raise CheckoutError(code="COUPON_INVALID", message="This coupon code is not valid for this product.",
                            field="coupon")
    if coupon.expires_at is not None and coupon.expires_at <= now:
        raise CheckoutError(code="COUPON_EXPIRED", message="This coupon has expired.", field="coupon")
    if coupon.usage_limit is not None and coupon.used_count >= coupon.usage_limit:
        raise CheckoutError(code="COUPON_USED_UP", message="This coupon has been used up.", field="coupon")
    return coupon


def price_quote(*, product: Product, quantity: int, coupon_code: str = "", now: datetime | None = None) -> PriceQuote:
    """The price of ``quantity`` × ``product``: the best wholesale tier the
    quantity reaches, then the coupon on what is left. Never below 0.01.
    Raises CheckoutError (COUPON_INVALID / COUPON_EXPIRED / COUPON_USED_UP)."""
    now = now or timezone.now()
    subtotal = _cents(product.price * quantity)
    # A tier starts at 2 keys or more (the tier_min_quantity_at_least_two
    # constraint): one key is never discounted, and its tiers need no query.
    tiers = product_tiers(product=product) if quantity >= 2 else []
    tier = next((t for t in reversed(tiers) if t.min_quantity <= quantity), None)
    tier_percent = tier.percent_off if tier else Decimal(0)
    tier_discount = _cents(subtotal * tier_percent / 100)
    after_tier = subtotal - tier_discount
    code = coupon_code_normalise(coupon_code)
    coupon = _coupon_usable(code=code, product=product, now=now) if code else None
    coupon_discount = Decimal("0.00")
    if coupon is not None:
        raw = after_tier * coupon.value / 100 if coupon.kind == CouponKind.PERCENT else coupon.value
        coupon_discount = min(_cents(raw), after_tier - CENT)  # an order is never free
    return PriceQuote(
        unit_price=product.price, quantity=quantity, subtotal=subtotal, tier_percent=tier_percent,
        tier_discount=tier_discount, coupon_code=code, coupon_discount=max(coupon_discount, Decimal("0.00")),
        amount=after_tier - max(coupon_discount, Decimal("0.00")), coupon_id=coupon.pk if coupon else None,
    )


def _coupon_use(*, quote: PriceQuote, now: datetime) -> None:
    """Count one use of the quote's coupon. One conditional UPDATE: two buyers
    racing for the last use cannot both get it. Call inside a transaction."""
    used = (
        Coupon.objects.filter(pk=quote.coupon_id, active=True)
        .filter(Q(usage_limit__isnull=True) | Q(used_count__lt=F("usage_limit")))
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .update(used_count=F("used_count") + 1)
    )
    if not used:
        coupon = Coupon.objects.filter(pk=quote.coupon_id).first()
        if coupon is not None and coupon.expires_at is not None and coupon.expires_at <= now:
            raise CheckoutError(code="COUPON_EXPIRED", message="This coupon has expired.", field="coupon")
        if coupon is not None and coupon.active:
            raise CheckoutError(code="COUPON_USED_UP", message="This coupon has been used up.", field="coupon")
        raise CheckoutError(code="COUPON_INVALID", message="This coupon code is not valid for this product.",
                            field="coupon")


@dataclass(frozen=True)
class CheckoutTicket:
    """A checkout that passed validation and the risk assessment."""

    product: Product
    quantity: int
    email: str
    phone: str
    client_ip: str | None
    assessment: object
    quote: PriceQuote | None = None
    query_password_hash: str = ""
    language: str = ""
    buyer_email: str = ""  # the email with its aliases folded away: the unpaid-orders cap counts by it
    device: str = ""
    manual_answers: tuple = ()  # a manual product's answers, checked: ({key, label, value}, ...)


def checkout_prepare(
    *, product_slug: str, quantity: int, email: str, phone: str = "", client_ip: str | None = None,
    device: str = "", user_agent: str = "", coupon: str = "", query_password: str = "", variant: int | None = None,
    fields: dict | None = None, product_read: Product | None = None,
) -> CheckoutTicket:
    """Validate the input, price the order and assess the buyer, outside any
    transaction: the assessment is kept even when it refuses, so a blocked
    buyer's reference (CheckoutBlocked.ref) can be looked up by staff.
    ``fields``: a manual product's answers by field key (FIELD_REQUIRED,
    FIELD_INVALID). ``product_read``: the active product ``product_slug``
    names as the caller read it in this request (its ``parent`` loaded,
    ``has_variants`` set), not read again."""

    email = (email or "").strip()
    phone = (phone or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise CheckoutError(code="EMAIL_INVALID", message="Enter a valid email address.", field="email") from None
    if phone and not phone.lstrip("+").isdigit():
        raise CheckoutError(code="PHONE_INVALID", message="A phone number has digits only.", field="phone")
    product = product_read if product_read is not None and product_read.slug == product_slug else (
        product_for_checkout(slug=product_slug))
    if product is None or product.parent_id is not None and not product.parent.active:
        raise CheckoutError(code="PRODUCT_NOT_FOUND", message="This product is not for sale.", field="product")
    product = variant_chosen(product=product, variant=variant)
    if not isinstance(quantity, int) or not 1 <= quantity <= product.max_per_order:
        raise CheckoutError(
            code="QUANTITY_INVALID", message=f"Choose between 1 and {product.max_per_order}.", field="quantity",
        )
    if query_password and len(query_password) < QUERY_PASSWORD_MIN_LENGTH:
        raise CheckoutError(code="QUERY_PASSWORD_SHORT", field="query_password",
                            message=f"A query password has at least {QUERY_PASSWORD_MIN_LENGTH} characters.")
    answers = manual_answers_clean(product=product, answers=fields)
    quote = price_quote(product=product, quantity=quantity, coupon_code=coupon or "")
    buyer = BuyerContext(email=email_normalise(email), ip=client_ip or "", device=device,
                         phone=phone_normalise(phone) if phone else "", user_agent=user_agent[:300])
    try:
        assessment = checkout_assess(buyer=buyer, product_id=product.pk, quantity=quantity,
                                     amount=quote.amount)
    except LimitExceeded as exc:
        raise CheckoutError(code=exc.code, message=exc.message, field="quantity") from None
    except CheckoutBlocked as blocked:
        _risk_blocked_alert(buyer=buyer, ref=blocked.ref)
        raise
    return CheckoutTicket(product=product, quantity=quantity, email=email, phone=phone, client_ip=client_ip,
                          assessment=assessment, quote=quote,
                          query_password_hash=make_password(query_password) if query_password else "",
                          language=(get_language() or "")[:10], buyer_email=buyer_email_key(email),
                          device=(device or "")[:64], manual_answers=tuple(answers))


def checkout_place_prepared(*, ticket: CheckoutTicket, savepoint: bool = True) -> PlacedOrder:
    """Create the PENDING_PAYMENT order holding its stock. ``savepoint=False``
    inside a caller's transaction that ends with any error this raises
    (checkout_start_payment's): two statements fewer.

    The hold is a set of key rows (``inventory.services.keys_hold``): the
    order's keys are set aside for it, so two buyers can never be sent to
    pay for the same last key, and checkouts of one hot product lock
    different keys instead of queueing on the product. The hold lapses after
    ORDER_HOLD_MINUTES: the next checkout that finds the stock short puts
    lapsed holds back (``_holds_lapsed_release``), the sweep expires the order.
    """
    quantity = ticket.quantity
    product = ticket.product
    # The product, its price and the coupon's terms are the ticket's, read
    # moments ago: reading them again without a lock would not close the
    # race with an owner's edit, only move it. The coupon's use is still
    # counted by a conditional UPDATE (``_coupon_use``): its limit holds.
    quote = ticket.quote or price_quote(product=product, quantity=quantity)
    with transaction.atomic(savepoint=savepoint):
        now = timezone.now()
        unpaid_orders_cap_check(buyer_email=ticket.buyer_email, device=ticket.device, client_ip=ticket.client_ip,
                                product_id=product.pk, now=now)
        if quote.coupon_id is not None:
            _coupon_use(quote=quote, now=now)
        token, token_hash = order_token_new()
        order = _order_create(
            token_hash=token_hash, email=ticket.email, phone=ticket.phone, amount=quote.amount,
            currency=product.currency, client_ip=ticket.client_ip,
            hold_expires_at=now + timedelta(minutes=product.hold_minutes or settings.ORDER_HOLD_MINUTES),
            buyer_email=ticket.buyer_email, buyer_device=ticket.device,
            query_password_hash=ticket.query_password_hash, coupon_id=quote.coupon_id, coupon_code=quote.coupon_code,
            discount=quote.discount, language=ticket.language,
        )
        line = OrderLine.objects.create(order=order, product=product, quantity=quantity, unit_price=product.price,
                                        discount=quote.discount, amount=quote.amount)
        _stock_hold(line=line, product=product, now=now)
        if ticket.manual_answers:
            manual_answers_save(line=line, answers=list(ticket.manual_answers))
        events_save(event_created(order, quantity=quantity, discount=quote.discount, coupon=quote.coupon_code,
                                  tier_percent=quote.tier_percent))
        assessment_attach(assessment=ticket.assessment, order_id=order.pk, product_id=product.pk, quantity=quantity)
    return PlacedOrder(order=order, token=token)


def _stock_hold(*, line: OrderLine, product: Product, now: datetime) -> None:
    """Hold the line's keys; when too few are free, put lapsed holds back in
    stock and try once more. Raises OUT_OF_STOCK (the caller's transaction
    rolls the order back). A reusable product holds no key: its line counts
    against the sales cap while the hold is live (``_reusable_hold``); a
    manual one has no stock at all (staff deliver it)."""
    if product.kind == ProductKind.MANUAL:
        return None
    if product.kind == ProductKind.REUSABLE:
        return _reusable_hold(line=line, product=product)
    hold = functools.partial(keys_hold, line_id=line.pk, product_id=product.pk, quantity=line.quantity)
    free = hold()
    if free < line.quantity and _holds_lapsed_release(product_id=product.pk, now=now):
        free = hold()
    if free == line.quantity:
        return
    raise CheckoutError(code="OUT_OF_STOCK", message=_out_of_stock_message(product, free), field="quantity")


def _reusable_hold(*, line: OrderLine, product: Product) -> None:
    """A reusable product sells while it has a key in stock and, with a cap,
    sales left: counted after a transaction-level lock on the product's cap
    (safe behind PgBouncer), so two checkouts cannot both take the last sale."""
    if product.sales_cap is not None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"kamidrop-cap:{product.pk}"])
    if not keys_available_count(product=product):
        raise CheckoutError(code="OUT_OF_STOCK", message=_out_of_stock_message(product, 0), field="quantity")
    left = reusable_left(products=[product], clamp=False)[product.pk]  # this line's order counts itself
    if left is not None and left < 0:
        raise CheckoutError(code="OUT_OF_STOCK", field="quantity",
                            message=_out_of_stock_message(product, max(0, left + line.quantity)))


def _holds_lapsed_release(*, product_id: int, now: datetime) -> int:
    """Put back the keys of unpaid orders of this product whose hold has
    lapsed (the sweep has not expired them yet); returns how many. Found
    through the unpaid orders' hold index: lapsed ones are few, as the sweep
    expires them every minute."""
    lines = OrderLine.objects.filter(order__status=OrderStatus.PENDING_PAYMENT, order__hold_expires_at__lte=now,
                                     product_id=product_id).values_list("pk", flat=True)
    return keys_holds_release(line_ids=list(lines), skip_locked=True)


def checkout_place_order(**fields) -> PlacedOrder:
    """``checkout_prepare`` then ``checkout_place_prepared``. Do not call it
    inside a transaction (a refusal's assessment must survive)."""
    return checkout_place_prepared(ticket=checkout_prepare(**fields))


def buyer_email_key(email: str) -> str:
    """The email as the unpaid-orders cap counts it: aliases folded away
    (case, Gmail's dots, and a ``+tag`` at any domain), so variants of one
    mailbox count as one buyer."""
    local, _, domain = email_normalise(email).rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}" if domain else local


def _risk_blocked_alert(*, buyer: BuyerContext, ref: str) -> None:
    """One owner alert per blocked source and hour, not one per attempt."""
    source = buyer.device or buyer.ip or buyer.email
    owner_alert_raise(
        kind=AlertKind.RISK_BLOCK, dedupe_key=f"risk-blocked:{source}",
        subject="Checkouts blocked by risk rules",
        body=f"Checkouts were blocked (first reference {ref}); see Risk control → Assessments.",
    )


def _out_of_stock_message(product: Product, free: int) -> str:
    message = f"Only {free} left." if free else "Sold out."
    held, next_release = product_holds(product=product)
    if held and next_release is not None:
        local = timezone.localtime(next_release)
        message += (
            f" {held} more {'is' if held == 1 else 'are'} held for buyers who have not paid yet;"
            f" unpaid holds end from {local:%H:%M} ({local:%Z})."
        )
    return message


def _order_create(**fields) -> Order:
    """The order, under a fresh random number: one INSERT that skips a taken
    number (no savepoint), drawn again on a collision."""
    for _ in range(5):
        placed = rows_insert_unless_taken(objs=[Order(order_no=_order_no_new(), **fields)], key="order_no")
        if placed:
            return placed[0]
    raise RuntimeError("could not draw a free order number")
