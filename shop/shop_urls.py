from django.urls import path
from django.views.i18n import set_language

from shop import api, media, seo
from shop.ops import health
from shop.views import catalogue, checkout, lookup, order, stock_alerts

app_name = "shop"

urlpatterns = [
    path("", catalogue.catalogue, name="catalogue"),
    path("p/<slug:slug>/", checkout.product_detail, name="product"),
    path("p/<slug:slug>/notify-me", stock_alerts.stock_alert_request_view, name="stock-alert"),
    path("alerts/unsubscribe/<str:token>", stock_alerts.stock_alert_unsubscribe_view, name="stock-alert-unsubscribe"),
    path("orders/", lookup.my_orders, name="my-orders"),
    path("orders/sign-out", lookup.my_orders_signout, name="my-orders-signout"),
    path("orders/<str:order_no>/", order.order_detail, name="order"),
    path("orders/<str:order_no>/status", order.order_status, name="order-status"),
    path("orders/<str:order_no>/pay", order.order_pay_request, name="order-pay"),
    path("orders/<str:order_no>/resend", order.order_resend_request, name="order-resend"),
    path("orders/<str:order_no>/keys/<int:key_id>/reveal", order.order_key_reveal_request, name="order-key-reveal"),
    path("orders/<str:order_no>/keys/reveal", order.order_keys_reveal_request, name="order-keys-reveal"),
    path("orders/<str:order_no>/keys.txt", order.order_keys_download_request, name="order-keys-download"),
    path("orders/<str:order_no>/keys/<int:key_id>/report", order.order_key_report_request, name="order-key-report"),
    path("lookup/", lookup.lookup, name="lookup"),
    path("lookup/link/<str:token>", lookup.lookup_link_open, name="lookup-link"),
    path("lookup/signin", lookup.signin_request_view, name="signin-request"),
    path("lookup/signin/<str:token>", lookup.signin_link_open, name="signin-link"),
    path("faq/", catalogue.faq, name="faq"),
    path("i18n/setlang/", set_language, name="set-language"),
    path("healthz", health.healthz, name="healthz"),
    path("favicon.ico", catalogue.favicon, name="favicon"),
    path("robots.txt", seo.robots_txt, name="robots-txt"),
    # MEDIA_URL: the uploaded pictures (shop.media).
    path("media/<path:name>", media.media_file, name="media"),
    path("api/v1/products", api.products, name="api-products"),
    path("api/v1/orders", api.orders_create, name="api-orders"),
    path("api/v1/payment-methods", api.payment_methods, name="api-payment-methods"),
    path("api/v1/orders/<str:order_no>", api.order_read, name="api-order"),
    path("api/v1/orders/<str:order_no>/resend", api.order_resend_request, name="api-order-resend"),
]
