"""Mounted at /admin/2fa/ in shop/project/urls.py, above the admin site's own URLs."""

from django.urls import path

from shop.twofactor import views

urlpatterns = [
    path("", views.manage, name="admin-2fa"),
    path("verify/", views.verify, name="admin-2fa-verify"),
    path("enrol/", views.enrol, name="admin-2fa-enrol"),
    path("recovery-codes/", views.recovery_codes, name="admin-2fa-recovery-codes"),
]
