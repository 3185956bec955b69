from django.urls import path

from payments import views

app_name = "payments"

urlpatterns = [
    path("sandbox/pay/<str:reference>/", views.sandbox_pay, name="sandbox-pay"),
    path("<slug:provider_id>/notify", views.provider_notify, name="notify"),
]
