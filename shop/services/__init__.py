"""The shop's services, by topic; import them from here."""

from shop.services.buyer import (  # noqa: F401
    KeyActionRefused,
    LookupFailed,
    key_report_replace,
    lookup_link_consume,
    lookup_link_email_send,
    lookup_link_request,
    lookup_link_token,
    order_key_report,
    order_key_reveal,
    order_key_staff_replace,
    order_keys_reveal,
    order_lookup,
)
from shop.services.checkout import (  # noqa: F401
    CheckoutError,
    CheckoutTicket,
    PlacedOrder,
    PriceQuote,
    checkout_place_order,
    checkout_place_prepared,
    checkout_prepare,
    coupon_code_normalise,
    price_quote,
)
from shop.services.fulfilment import (  # noqa: F401
    order_fill_from_stock,
    order_fulfil,
    order_key_get,
    order_key_replace,
    order_review_approve,
    orders_fulfil,
    orders_hand_over,
    product_low_stock_check,
    product_stock_import,
)
from shop.services.lifecycle import (  # noqa: F401
    REFUNDABLE_STATUSES,
    OrderTransitionError,
    order_expire,
    order_mark_paid,
    order_refund_begin,
    order_refund_complete,
    orders_expire_due,
    orders_mark_delivered,
    orders_mark_paid,
    orders_move,
)
from shop.services.resend import ResendNotAllowed, order_resend  # noqa: F401
from shop.services.settlement import (  # noqa: F401
    STUCK_LISTED,
    deliveries_recorded,
    orders_settle_delivered,
    orders_stuck_alert,
)
from shop.services.variants import product_variants_sync, variant_chosen  # noqa: F401
