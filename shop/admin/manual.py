"""Manual products (代充) in the admin: the fields a product asks for (an
inline on the product), and the staff's fulfilment queue, where staff read
the buyer's answers and enter what the buyer gets."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from riskctl.identity import client_ip
from shop.models import ManualField, ManualQueueOrder, OrderStatus
from shop.services import OrderTransitionError
from shop.services.manual import ManualDeliveryError, manual_answers_open, order_manual_deliver


class ManualFieldInline(admin.StackedInline):
    """Stacked, a few settings a line: as a table its fourteen columns ran off the page."""

    model = ManualField
    extra = 0
    fields = (("position", "key", "type", "required"), ("label", "label_zh"), "choices",
              ("max_length", "min_value", "max_value"), "pattern", ("pattern_message", "pattern_message_zh"), ("help_text", "help_text_zh"))
    formfield_overrides = {  # noqa: RUF012 - Django's documented class attribute
        ManualField._meta.get_field("choices").__class__: {"widget": forms.Textarea(attrs={"rows": 2, "cols": 20})},
    }
    verbose_name = _("field the buyer fills in (manual products)")
    verbose_name_plural = _("fields the buyer fills in (manual products)")


class ManualDeliverForm(forms.Form):
    content = forms.CharField(
        label=_("What the buyer gets"), max_length=4000,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60, "autocomplete": "off"}),
        help_text=_("Sealed like a key, then shown on the buyer's order page and sent by email (and SMS) "
                    "as their key would be."),
    )


def _minutes(delta) -> int:
    return max(0, int(delta.total_seconds() // 60))


@admin.register(ManualQueueOrder)
class ManualQueueAdmin(admin.ModelAdmin):
    """Paid manual orders waiting for staff, the one due first (overdue ones) on top."""

    list_display = ("order_no", "products", "paid_at", "due", "amount", "currency")
    list_display_links = ("order_no",)
    search_fields = ("order_no", "email")
    list_per_page = 50

    def get_queryset(self, request):
        return (super().get_queryset(request).filter(status=OrderStatus.PREPARING)
                .prefetch_related("lines__product").order_by("fulfil_due_at", "id"))

    def get_ordering(self, request):
        return ("fulfil_due_at", "id")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("products"))
    def products(self, obj):
        return ", ".join(f"{line.quantity} × {line.product.name}" for line in obj.lines.all())

    @admin.display(description=_("time left"), ordering="fulfil_due_at")
    def due(self, obj):
        if obj.fulfil_due_at is None:
            return "-"
        left = obj.fulfil_due_at - timezone.now()
        if left.total_seconds() < 0:
            return format_html('<strong class="kd-overdue" style="color:#ba2121">{}</strong>',
                               gettext("overdue by %(n)d min") % {"n": _minutes(-left)})
        return gettext("%(n)d min left") % {"n": _minutes(left)}

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The order's answers and the delivery form, instead of Django's change form."""
        order = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request, order):
            raise PermissionDenied
        form = ManualDeliverForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                order_manual_deliver(order_id=order.pk, content=form.cleaned_data["content"], user=request.user)
            except (ManualDeliveryError, OrderTransitionError) as exc:
                form.add_error("content", getattr(exc, "message", str(exc)))
            else:
                self.message_user(request, gettext("%(order)s was delivered to the buyer.") % {"order": order.order_no},
                                  messages.SUCCESS)
                return redirect("admin:shop_manualqueueorder_changelist")
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "order": order, "form": form,
            "answers": manual_answers_open(order=order, user=request.user, ip=client_ip(request)),
            "lines": list(order.lines.all()),
            "due": self.due(order), "title": gettext("Deliver %(order)s by hand") % {"order": order.order_no},
        }
        return TemplateResponse(request, "admin/shop/manualqueueorder/deliver.html", context)
