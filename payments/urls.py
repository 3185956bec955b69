from django.urls import path

from payments import views

app_name = "payments"

urlpatterns = [
    path("sandbox/pay/<str:reference>/", views.sandbox_pay, name="sandbox-pay"),
    path("pay/<str:reference>/", views.pay_page, name="pay"),
    path("pay/<str:reference>/status", views.pay_status, name="pay-status"),
    path("stripe/webhook", views.provider_notify, {"provider_id": "stripe"}, name="stripe-webhook"),
    path("<slug:provider_id>/notify", views.provider_notify, name="notify"),
]
