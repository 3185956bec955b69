from django.urls import path

from shop import api, views

app_name = "shop"

urlpatterns = [
    path("", views.catalogue, name="catalogue"),
    path("p/<slug:slug>/", views.product_detail, name="product"),
    path("orders/<str:order_no>/", views.order_detail, name="order"),
    path("orders/<str:order_no>/status", views.order_status, name="order-status"),
    path("orders/<str:order_no>/resend", views.order_resend_request, name="order-resend"),
    path("healthz", views.healthz, name="healthz"),
    path("api/v1/products", api.products, name="api-products"),
    path("api/v1/orders", api.orders_create, name="api-orders"),
    path("api/v1/orders/<str:order_no>", api.order_read, name="api-order"),
    path("api/v1/orders/<str:order_no>/resend", api.order_resend_request, name="api-order-resend"),
]
