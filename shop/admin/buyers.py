"""What buyers asked for: back-in-stock requests and "All my orders" sign-in links."""

from django.contrib import admin

from shop.admin.readonly import ReadOnlyAdminMixin
from shop.models import SignInLink, StockAlertRequest


@admin.register(StockAlertRequest)
class StockAlertRequestAdmin(admin.ModelAdmin):
    """Buyers waiting for a sold-out product. Emailed once, automatically, when
    its keys are imported; staff look, or cancel a request."""

    list_display = ("product", "email", "language", "created_at", "notified_at", "unsubscribed_at")
    list_select_related = ("product",)
    list_filter = (("notified_at", admin.EmptyFieldListFilter), "product")
    search_fields = ("email", "product__name", "product__slug")
    readonly_fields = ("product", "email", "language", "created_at", "notified_at", "unsubscribed_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SignInLink)
class SignInLinkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """"All my orders" links sent (the token is never stored): when, to whom, used or not."""

    list_display = ("email", "created_at", "expires_at", "used_at")
    search_fields = ("email",)
