"""Payment methods: which ways to pay exist, with whose credentials.

A method is a provider plug-in (``PAYMENT_PROVIDERS``) bound to one
merchant's configuration (``MethodConfig``). Methods come from two places:

- the environment, for compose deploys: ``EPAY_*`` → ``epay``,
  ``STRIPE_*`` → ``stripe``, ``ALIPAY_*`` → ``alipay``, ``WECHATPAY_*`` →
  ``wechat``, ``EPUSDT_*`` → ``usdt``, and ``sandbox`` where it is enabled;
- the admin (``PaymentMethod`` rows, credentials sealed at rest), which may
  add any number of merchants; a row whose code is an environment method's id
  replaces it.

The configuration is read once per process and kept for
``PAYMENT_METHODS_CACHE_SECONDS`` (the notify endpoint looks its method up on
every call); saving a method in the admin forgets it at once in that process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.urls import reverse
from django.utils.module_loading import import_string
from django.utils.translation import get_language

from inventory.sealing import SealError, blob_open, blob_seal
from payments.providers.base import PaymentProvider

CENT = Decimal("0.01")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MethodConfig:
    id: str  # the method's id: Payment.provider, the notify URL, the API's provider field
    provider: str  # the plug-in: sandbox, epay, stripe, alipay, wechat, epusdt
    channel: str = ""
    name: str = ""
    name_zh: str = ""
    icon: str = "other"
    position: int = 0
    enabled: bool = True
    gateway: str = ""
    merchant_id: str = ""
    app_id: str = ""
    key_serial: str = ""
    platform_key_id: str = ""
    usdt_rate: Decimal | None = None
    query_before_credit: bool = False
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    fee_percent: Decimal = Decimal("0")
    fee_fixed: Decimal = Decimal("0")
    product_ids: frozenset[int] | None = None  # None: every product
    source: str = "env"  # env | admin
    secrets: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def secret(self, name: str) -> str:
        return dict(self.secrets).get(name, "")

    def notify_url(self) -> str:
        return settings.SITE_URL + reverse("payments:notify", args=[self.id])

    @property
    def display_name(self) -> str:
        if (get_language() or "").lower().startswith("zh"):
            return self.name_zh or self.name
        return self.name

    @property
    def icon_path(self) -> str:
        return f"payments/icons/{self.icon or 'other'}.svg"

    @property
    def fee_text(self) -> str:
        """The fee or discount as a buyer reads it: "+2%", "−1.00", "" for none."""
        parts = []
        if self.fee_percent:
            parts.append(f"{'+' if self.fee_percent > 0 else '−'}{abs(self.fee_percent).normalize():f}%")
        if self.fee_fixed:
            parts.append(f"{'+' if self.fee_fixed > 0 else '−'}{abs(self.fee_fixed):.2f}")
        return " ".join(parts)

    def amount_for(self, amount: Decimal) -> Decimal:
        """What the buyer pays this way for an order of ``amount``: with the
        method's fee or discount, never below one cent."""
        if not self.fee_percent and not self.fee_fixed:
            return amount
        payable = amount * (1 + self.fee_percent / 100) + self.fee_fixed
        return max(payable.quantize(CENT, rounding=ROUND_HALF_UP), CENT)

    def offered_for(self, *, product_id: int | None, amount: Decimal | None, parent_id: int | None = None) -> bool:
        """Offered for this product (or ``parent_id``, the product it is a variant of) and amount."""
        if self.product_ids is not None and not {product_id, parent_id} & (set(self.product_ids) - {None}):
            return False
        if amount is not None and self.min_amount is not None and amount < self.min_amount:
            return False
        if amount is not None and self.max_amount is not None and amount > self.max_amount:
            return False
        return True


# --- credentials ----------------------------------------------------------------

def _credentials_aad(code: str) -> bytes:
    return f"kamidrop-payment-method:{code}".encode()


def credentials_seal(*, code: str, credentials: dict[str, str]) -> bytes:
    return blob_seal(json.dumps(credentials, sort_keys=True), aad=_credentials_aad(code))


def credentials_open(*, code: str, sealed: bytes) -> dict[str, str]:
    if not sealed:
        return {}
    return json.loads(blob_open(bytes(sealed), aad=_credentials_aad(code)))


# --- where methods come from ----------------------------------------------------

def _env_methods() -> list[MethodConfig]:
    s = settings
    methods = []
    if s.SANDBOX_ENABLED and s.SANDBOX_SECRET:
        methods.append(MethodConfig(
            id="sandbox", provider="sandbox", name="Sandbox (test payment)", name_zh="沙盒（测试支付）",
            icon="other", position=1000, secrets=(("secret", s.SANDBOX_SECRET),),
        ))
    if s.EPAY_PID:
        icon = {"alipay": "alipay", "wxpay": "wechat", "qqpay": "qq"}.get(s.EPAY_TYPE, "other")
        names = {"alipay": ("Alipay", "支付宝"), "wxpay": ("WeChat Pay", "微信支付"), "qqpay": ("QQ Pay", "QQ钱包")}
        name, name_zh = names.get(s.EPAY_TYPE, ("Alipay / WeChat Pay", "支付宝 / 微信支付"))
        methods.append(MethodConfig(
            id="epay", provider="epay", channel=s.EPAY_TYPE, name=name, name_zh=name_zh, icon=icon, position=10,
            gateway=s.EPAY_GATEWAY, merchant_id=s.EPAY_PID, query_before_credit=s.EPAY_QUERY_BEFORE_CREDIT,
            secrets=(("key", s.EPAY_KEY),),
        ))
    if s.ALIPAY_APP_ID:
        methods.append(MethodConfig(
            id="alipay", provider="alipay", channel=s.ALIPAY_CHANNEL, name="Alipay", name_zh="支付宝",
            icon="alipay", position=20, gateway=s.ALIPAY_GATEWAY, merchant_id=s.ALIPAY_APP_ID,
            query_before_credit=s.ALIPAY_QUERY_BEFORE_CREDIT,
            secrets=(("private_key", s.ALIPAY_PRIVATE_KEY), ("public_key", s.ALIPAY_PUBLIC_KEY)),
        ))
    if s.WECHATPAY_MCHID:
        methods.append(MethodConfig(
            id="wechat", provider="wechat", channel="native", name="WeChat Pay", name_zh="微信支付", icon="wechat",
            position=30, gateway=s.WECHATPAY_GATEWAY, merchant_id=s.WECHATPAY_MCHID, app_id=s.WECHATPAY_APPID,
            key_serial=s.WECHATPAY_SERIAL, platform_key_id=s.WECHATPAY_PLATFORM_KEY_ID,
            query_before_credit=s.WECHATPAY_QUERY_BEFORE_CREDIT,
            secrets=(("private_key", s.WECHATPAY_PRIVATE_KEY), ("apiv3_key", s.WECHATPAY_APIV3_KEY),
                     ("platform_public_key", s.WECHATPAY_PLATFORM_PUBLIC_KEY)),
        ))
    if s.EPUSDT_GATEWAY:
        methods.append(MethodConfig(
            id="usdt", provider="epusdt", channel="trc20", name="USDT (TRC20)", name_zh="USDT（TRC20）", icon="usdt",
            position=40, gateway=s.EPUSDT_GATEWAY, usdt_rate=s.EPUSDT_RATE,
            query_before_credit=s.EPUSDT_QUERY_BEFORE_CREDIT, secrets=(("token", s.EPUSDT_TOKEN),),
        ))
    if s.STRIPE_SECRET_KEY:
        methods.append(MethodConfig(
            id="stripe", provider="stripe", channel="card", name="Card", name_zh="银行卡", icon="card", position=50,
            gateway=s.STRIPE_API_BASE or "",
            secrets=(("secret_key", s.STRIPE_SECRET_KEY), ("webhook_secret", s.STRIPE_WEBHOOK_SECRET)),
        ))
    return methods


def method_config_from_row(row) -> MethodConfig:
    """A PaymentMethod row as the plug-ins see it (credentials opened). A row
    whose credentials do not open (sealed under a key no longer in the ring,
    tampered) counts as having none, so it is off, and the other methods
    keep working."""
    products = frozenset(p.pk for p in row.products.all())
    try:
        secrets = tuple(sorted(credentials_open(code=row.code, sealed=row.credentials_sealed).items()))
    except SealError as exc:
        logger.error("payment method %s: its credentials do not open (%s); it is off until they are entered again",
                     row.code, exc)
        secrets = ()
    return MethodConfig(
        id=row.code, provider=row.provider, channel=row.channel, name=row.name, name_zh=row.name_zh, icon=row.icon,
        position=row.position, enabled=row.enabled, gateway=row.gateway_url, merchant_id=row.merchant_id,
        app_id=row.app_id, key_serial=row.key_serial, platform_key_id=row.platform_key_id, usdt_rate=row.usdt_rate,
        query_before_credit=row.query_before_credit, min_amount=row.min_amount, max_amount=row.max_amount,
        fee_percent=row.fee_percent, fee_fixed=row.fee_fixed, product_ids=products or None, source="admin",
        secrets=secrets,
    )


def _db_methods() -> list[MethodConfig]:
    from payments.models import PaymentMethod  # settings may load this module before the app registry

    return [method_config_from_row(row) for row in PaymentMethod.objects.prefetch_related("products")]


_cache_lock = threading.Lock()
_cache: dict = {"at": None, "methods": ()}


def methods_forget() -> None:
    """Drop this process's copy of the configuration (after an admin change)."""
    with _cache_lock:
        _cache["at"] = None


def methods_all() -> tuple[MethodConfig, ...]:
    """Every configured method, enabled or not, in checkout order."""
    ttl = settings.PAYMENT_METHODS_CACHE_SECONDS
    now = time.monotonic()
    with _cache_lock:
        if _cache["at"] is not None and ttl > 0 and now - _cache["at"] < ttl:
            return _cache["methods"]
    by_id = {m.id: m for m in _env_methods()}
    by_id.update({m.id: m for m in _db_methods()})  # the admin's row replaces the environment's
    methods = tuple(sorted(by_id.values(), key=lambda m: (m.position, m.id)))
    with _cache_lock:
        _cache.update(at=now, methods=methods)
    return methods


class ProviderUnknown(Exception):
    """No enabled payment method has this id."""

    code = "PROVIDER_UNKNOWN"


def provider_for(config: MethodConfig) -> PaymentProvider:
    path = settings.PAYMENT_PROVIDERS.get(config.provider)
    if path is None:
        raise ProviderUnknown(config.id)
    return import_string(path)(config)


def method_provider(method_id: str) -> PaymentProvider:
    """The plug-in of an enabled, fully configured method, bound to it."""
    for config in methods_all():
        if config.id == method_id and config.enabled:
            provider = provider_for(config)
            if provider.enabled():
                return provider
    raise ProviderUnknown(method_id)


def provider_get(method_id: str) -> PaymentProvider:
    """The plug-in of the enabled payment method ``method_id``, bound to its merchant."""
    return method_provider(method_id)


def methods_offered(*, product_id: int | None, amount: Decimal | None,
                    parent_id: int | None = None) -> list[MethodConfig]:
    """The methods a buyer may pick for this product (a variant of ``parent_id``) and amount, in order."""
    offered = []
    for config in methods_all():
        if not config.enabled or not config.offered_for(product_id=product_id, amount=amount, parent_id=parent_id):
            continue
        try:
            if provider_for(config).enabled():
                offered.append(config)
        except ProviderUnknown:
            continue
    return offered
