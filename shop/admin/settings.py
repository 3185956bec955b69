"""The shop's settings: the profile (notice, contact channels) and the FAQ."""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.timezone import now
from django.utils.translation import gettext_lazy as _

from shop.models import FaqEntry, ShopProfile
from shop.profile import profile_qr_store, qr_image_fit, shop_profile_forget


class ShopProfileForm(forms.ModelForm):
    class Meta:
        model = ShopProfile
        exclude = ("updated_at",)

    def clean_telegram(self):
        # Owners paste "@name" or the t.me link; the field keeps the bare name.
        value = self.cleaned_data["telegram"].strip()
        for prefix in ("https://t.me/", "http://t.me/", "t.me/", "@"):
            value = value.removeprefix(prefix)
        return value

    def clean_contact_qq(self):
        return "".join(self.cleaned_data["contact_qq"].split())

    def clean_wechat_qr(self):
        picture = self.cleaned_data.get("wechat_qr")
        if isinstance(picture, UploadedFile):
            # Checked and scaled here, so a refused picture is a field error;
            # written in save_model once the whole form is valid.
            return qr_image_fit(data=picture.read())
        return picture


@admin.register(ShopProfile)
class ShopProfileAdmin(admin.ModelAdmin):
    """One row: the list is the row's own page, and there is no second to add."""

    form = ShopProfileForm
    fieldsets = (
        (_("Notice (公告)"), {"fields": ("notice_on", "notice_until", "notice", "notice_zh"),
                              "description": _("Shown under the header of every page until the buyer closes it; "
                                               "edited text shows again to everyone.")}),
        (_("Contact channels"), {"fields": ("contact_email", "contact_qq", "wechat_id", "wechat_qr", "telegram",
                                            "support_hours", "support_hours_zh"),
                                 "description": _("Shown in the footer and on the help page, and wherever the shop "
                                                  "tells buyers to contact you. Leave empty what you do not use.")}),
    )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        ShopProfile.objects.get_or_create(pk=1)
        return redirect(reverse("admin:shop_shopprofile_change", args=[1], current_app=self.admin_site.name))

    def response_change(self, request, obj):
        # Back to the row itself, not to a list of one.
        response = super().response_change(request, obj)
        if response.status_code == 302 and "_continue" not in request.POST:
            return redirect(request.path)
        return response

    def save_model(self, request, obj, form, change):
        picture = form.cleaned_data.get("wechat_qr")
        if isinstance(picture, ContentFile):
            profile_qr_store(profile=obj, picture=picture)
        obj.updated_at = now()
        super().save_model(request, obj, form, change)
        shop_profile_forget()


@admin.register(FaqEntry)
class FaqEntryAdmin(admin.ModelAdmin):
    list_display = ("__str__", "question_zh", "position", "active")
    list_display_links = ("__str__",)
    list_editable = ("position", "active")
    ordering = ("position", "id")
    search_fields = ("question", "question_zh", "answer", "answer_zh")
    fields = ("question", "answer", "question_zh", "answer_zh", "position", "active")
