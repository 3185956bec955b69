from django.contrib import admin
from django.urls import include, path

from shop.ops import dashboard, metrics

urlpatterns = [
    path("admin/django-rq/", include("django_rq.urls")),
    path("admin/dashboard/", dashboard.dashboard, name="admin-dashboard"),
    # Two-factor sign-in (shop/twofactor/): above the admin site's own URLs.
    path("admin/2fa/", include("shop.twofactor.urls")),
    path("admin/", admin.site.urls),
    path("metrics", metrics.metrics, name="metrics"),
    path("payments/", include("payments.urls")),
    path("", include("shop.keys_urls")),
    path("", include("shop.shop_urls")),
]
