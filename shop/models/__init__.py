"""Catalogue and orders: Product, Order, OrderLine and the append-only OrderEvent.

By topic, imported from here (Django looks the models up in shop.models):
catalogue, orders, buyer (what buyers leave behind), profile (notice, contact, FAQ),
imports (what ``import_from`` brought across), manual (代充 fields, answers, the queue).
"""

from shop.models.buyer import KeyReport, KeyReportStatus, KeyReveal, LookupLink, SignInLink, StockAlertRequest  # noqa: F401
from shop.models.catalogue import (  # noqa: F401
    MANUAL_FULFIL_MINUTES_DEFAULT,
    VARIANT_INHERITED,
    Category,
    Coupon,
    CouponKind,
    Product,
    ProductKind,
    QuantityTier,
)
from shop.models.imports import ImportRecord  # noqa: F401
from shop.models.localised import LocalisedText  # noqa: F401
from shop.models.manual import ManualAnswers, ManualField, ManualFieldType, ManualQueueOrder  # noqa: F401
from shop.models.orders import Order, OrderEvent, OrderEventType, OrderLine, OrderStatus  # noqa: F401
from shop.models.profile import (  # noqa: F401
    QQ_VALIDATOR,
    TELEGRAM_VALIDATOR,
    WECHAT_VALIDATOR,
    FaqEntry,
    ShopProfile,
)
