from django.urls import path
from django.views.i18n import set_language

from shop import api, media, seo, views

app_name = "shop"

urlpatterns = [
    path("", views.catalogue, name="catalogue"),
    path("p/<slug:slug>/", views.product_detail, name="product"),
    path("p/<slug:slug>/notify-me", views.stock_alert_request_view, name="stock-alert"),
    path("alerts/unsubscribe/<str:token>", views.stock_alert_unsubscribe_view, name="stock-alert-unsubscribe"),
    path("orders/", views.my_orders, name="my-orders"),
    path("orders/sign-out", views.my_orders_signout, name="my-orders-signout"),
    path("orders/<str:order_no>/", views.order_detail, name="order"),
    path("orders/<str:order_no>/status", views.order_status, name="order-status"),
    path("orders/<str:order_no>/pay", views.order_pay_request, name="order-pay"),
    path("orders/<str:order_no>/resend", views.order_resend_request, name="order-resend"),
    path("orders/<str:order_no>/keys/<int:key_id>/reveal", views.order_key_reveal_request, name="order-key-reveal"),
    path("orders/<str:order_no>/keys/reveal", views.order_keys_reveal_request, name="order-keys-reveal"),
    path("orders/<str:order_no>/keys.txt", views.order_keys_download_request, name="order-keys-download"),
    path("orders/<str:order_no>/keys/<int:key_id>/report", views.order_key_report_request, name="order-key-report"),
    path("lookup/", views.lookup, name="lookup"),
    path("lookup/link/<str:token>", views.lookup_link_open, name="lookup-link"),
    path("lookup/signin", views.signin_request_view, name="signin-request"),
    path("lookup/signin/<str:token>", views.signin_link_open, name="signin-link"),
    path("faq/", views.faq, name="faq"),
    path("i18n/setlang/", set_language, name="set-language"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("robots.txt", seo.robots_txt, name="robots-txt"),
    # MEDIA_URL: the uploaded pictures (shop.media).
    path("media/<path:name>", media.media_file, name="media"),
    path("api/v1/products", api.products, name="api-products"),
    path("api/v1/orders", api.orders_create, name="api-orders"),
    path("api/v1/payment-methods", api.payment_methods, name="api-payment-methods"),
    path("api/v1/orders/<str:order_no>", api.order_read, name="api-order"),
    path("api/v1/orders/<str:order_no>/resend", api.order_resend_request, name="api-order-resend"),
]
