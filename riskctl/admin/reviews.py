"""The review queue (the longest waiting first), the review desk and its bulk decisions."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from payments.services.refunds import RefundError
from payments.services.reviews import order_review_reject
from riskctl.admin.lists import _blocked_words, _order_buyer
from riskctl.forms import KIND_WORDS, BuyerBlockForm, DecisionNoteForm
from riskctl.models import ListEntry, ReviewItem, RiskEvent
from riskctl.reasons import number_plain, reasons_explain, wait_words
from riskctl.selectors import (
    buyer_history,
    identifier_sharers,
    linked_order_ids,
    review_neighbours,
    review_next_after,
    review_queue,
)
from riskctl.services import ReviewClosed
from shop.admin.readonly import ReadOnlyAdminMixin
from shop.models import Order
from shop.services import order_review_approve


@admin.register(ReviewItem)
class ReviewItemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The review queue (the longest waiting first) and the review desk: one
    held order with its reasons in words, its linked orders and the buyer's
    history, and the decisions."""

    list_display = ("order_number", "waiting", "amount", "email", "top_reason", "score", "linked_orders",
                    "outcome_words")
    list_filter = ("outcome",)
    search_fields = ("order__order_no", "assessment__email", "assessment__ref")
    search_help_text = _("Search by order number, email or assessment reference (R-XXXXX).")
    list_select_related = ("order", "assessment")
    actions = ("approve", "reject")
    # Undecided first, the longest waiting at the top; then the latest decided.
    ordering = (F("decided_at").desc(nulls_first=True), "opened_at")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("riskctl.change_reviewitem")

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("riskctl.view_reviewitem") or self.has_change_permission(request, obj)

    def has_block_permission(self, request) -> bool:
        return request.user.has_perm("riskctl.add_listentry")

    def get_queryset(self, request):
        linked = (
            RiskEvent.objects.filter(kind="ORDER_CREATED", device=OuterRef("assessment__device"))
            .exclude(device="").values("device").annotate(n=Count("order_id", distinct=True)).values("n")
        )
        return super().get_queryset(request).annotate(linked=Coalesce(Subquery(linked), 0))

    # --- the queue ----------------------------------------------------------------------

    def changelist_view(self, request, extra_context=None):
        queue = review_queue()
        oldest = queue.first()
        waiting = queue.count()
        title = ngettext("Review queue: %(n)d waiting", "Review queue: %(n)d waiting", waiting) % {"n": waiting}
        if oldest:
            title += _(", the oldest for %(wait)s") % {"wait": wait_words(timezone.now() - oldest.opened_at)}
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    @admin.display(description=_("order"), ordering="order__order_no")
    def order_number(self, obj):
        return obj.order.order_no

    @admin.display(description=_("waiting"), ordering="opened_at")
    def waiting(self, obj):
        return "—" if obj.decided_at else wait_words(timezone.now() - obj.opened_at)

    @admin.display(description=_("score"), ordering="assessment__score")
    def score(self, obj):
        return obj.assessment.score

    @admin.display(description=_("main reason"))
    def top_reason(self, obj):
        lines = reasons_explain(reasons=obj.assessment.reasons[:5], currency=obj.order.currency, baseline=(0, {}))
        return lines[0].fact if lines else "—"

    @admin.display(description=_("amount"))
    def amount(self, obj):
        return f"{number_plain(obj.order.amount, 2)} {obj.order.currency}"

    @admin.display(description=_("email"))
    def email(self, obj):
        return obj.assessment.email

    @admin.display(description=_("orders on this device"), ordering="linked")
    def linked_orders(self, obj):
        return obj.linked

    @admin.display(description=_("decision"), ordering="outcome")
    def outcome_words(self, obj):
        return obj.get_outcome_display() if obj.outcome else _("waiting")

    # --- the desk -----------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        item = self.get_object(request, unquote(object_id))
        if item is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, item):
            raise PermissionDenied
        forms_ = self._desk_forms(request, item)
        if request.method == "POST":
            if not self.has_change_permission(request, item):
                raise PermissionDenied
            response = self._desk_decide(request, item, forms_)
            if response is not None:
                return response
        return self._desk_render(request, item, forms_)

    def _desk_forms(self, request, item) -> dict:
        decision = request.POST.get("decision") if request.method == "POST" else None
        buyer = _order_buyer(item.order)
        sharers = identifier_sharers(buyer=buyer)

        def data(name):
            return request.POST if decision == name else None

        return {
            "decision": decision, "buyer": buyer, "sharers": sharers,
            "approve": DecisionNoteForm(data("approve"), prefix="approve", required=False),
            "reject": DecisionNoteForm(data("reject"), prefix="reject"),
            "block_note": DecisionNoteForm(data("block"), prefix="block"),
            "block": BuyerBlockForm(data("block"), prefix="block", buyer=buyer, sharers=sharers),
        }

    def _desk_decide(self, request, item, forms_):
        decision = forms_["decision"]
        order = item.order
        if decision == "block" and not self.has_block_permission(request):
            raise PermissionDenied
        note_form = forms_["block_note" if decision == "block" else decision] if decision in (
            "approve", "reject", "block") else None
        if note_form is None:
            self.message_user(request, _("Choose a decision."), messages.ERROR)
            return None
        if not note_form.is_valid() or (decision == "block" and not forms_["block"].is_valid()):
            self.message_user(request, _("Please correct the errors below."), messages.ERROR)
            return None
        note = note_form.cleaned_data["note"]
        try:
            if decision == "approve":
                order_review_approve(order_id=order.pk, user=request.user, note=note)
                done = _("Order %(no)s approved: the keys are being delivered.") % {"no": order.order_no}
            elif decision == "reject":
                order_review_reject(order_id=order.pk, user=request.user, note=note)
                done = _("Order %(no)s rejected: refunded, its keys back in stock.") % {"no": order.order_no}
            else:
                block = forms_["block"]
                order_review_reject(order_id=order.pk, user=request.user, note=note, block_buyer=True,
                                    block_kinds=block.chosen_kinds(), block_expires_at=block.expiries())
                entries = ListEntry.objects.filter(
                    list_type="BLOCK", kind__in=block.chosen_kinds(),
                    value__in=[v for k, v in block.identifiers if k in block.chosen_kinds()]).order_by("id")
                done = _("Order %(no)s rejected and refunded; blocked: %(what)s.") % {
                    "no": order.order_no, "what": _blocked_words(entries)}
        except ReviewClosed:
            item.refresh_from_db()
            self.message_user(request, _("Order %(no)s was already decided (%(outcome)s), nothing was changed.") % {
                "no": order.order_no, "outcome": item.get_outcome_display() or "—"}, messages.ERROR)
            return HttpResponseRedirect(request.path)
        except RefundError as exc:
            self.message_user(request, _("Order %(no)s is rejected, but the refund failed: %(error)s") % {
                "no": order.order_no, "error": exc}, messages.ERROR)
            return HttpResponseRedirect(request.path)
        self.message_user(request, done, messages.SUCCESS)
        following = review_next_after(item=item)
        if following is not None:
            return HttpResponseRedirect(reverse("admin:riskctl_reviewitem_change", args=[following]))
        return HttpResponseRedirect(reverse("admin:riskctl_reviewitem_changelist"))

    def _desk_render(self, request, item, forms_):
        order, assessment = item.order, item.assessment
        buyer = forms_["buyer"]
        previous, following, position, total = review_neighbours(item=item)
        linked_ids = linked_order_ids(buyer=buyer, exclude_order_id=order.pk)
        linked = Order.objects.in_bulk(list(linked_ids))
        history = buyer_history(buyer=buyer)
        history_orders = Order.objects.in_bulk({e.order_id for e in history if e.order_id})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts, "app_label": self.opts.app_label, "item": item, "order": order,
            "assessment": assessment, "buyer": buyer,
            "title": _("Review: order %(no)s") % {"no": order.order_no},
            "subtitle": None,
            "lines": order.lines.select_related("product").order_by("id"),
            "amount": f"{number_plain(order.amount, 2)} {order.currency}",
            "waited": wait_words((item.decided_at or timezone.now()) - item.opened_at),
            "reasons": reasons_explain(reasons=assessment.reasons, currency=order.currency),
            "previous": previous, "following": following, "position": position, "total": total,
            "linked": [{"order": linked[pk], "shared": [KIND_WORDS[k] for k in kinds]}
                       for pk, kinds in linked_ids.items() if pk in linked],
            "history": [{"event": e, "order": history_orders.get(e.order_id)} for e in history],
            "approve_form": forms_["approve"], "reject_form": forms_["reject"],
            "block_note_form": forms_["block_note"], "block_form": forms_["block"],
            "can_decide": item.decided_at is None and self.has_change_permission(request, item),
            "can_block": self.has_block_permission(request),
            "decided_by": item.decided_by,
        }
        return TemplateResponse(request, "admin/riskctl/reviewitem/desk.html", context)

    # --- bulk actions (the same services) ----------------------------------------------

    def _decide(self, request, queryset, approve: bool):
        form = ReviewDecisionForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                       "title": _("Approve orders") if approve else _("Reject and refund orders"),
                       "action": "approve" if approve else "reject",
                       "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)]}
            return TemplateResponse(request, "admin/riskctl/reviewitem/decide.html", context)
        block = form.cleaned_data["block_buyer"]
        if block and not self.has_block_permission(request):
            raise PermissionDenied
        done = 0
        for item in queryset.filter(decided_at__isnull=True).select_related("order"):
            try:
                if approve:
                    order_review_approve(order_id=item.order_id, user=request.user, note=form.cleaned_data["note"])
                else:
                    order_review_reject(order_id=item.order_id, user=request.user, note=form.cleaned_data["note"],
                                        block_buyer=block)
                done += 1
            except (ReviewClosed, RefundError) as exc:
                self.message_user(request, f"{item.order.order_no}: {exc}", messages.ERROR)
        message = (ngettext("%(n)d approved.", "%(n)d approved.", done) if approve
                   else ngettext("%(n)d rejected and refunded.", "%(n)d rejected and refunded.", done))
        self.message_user(request, message % {"n": done}, messages.SUCCESS)
        return None

    @admin.action(description=_("Approve (deliver the keys)"), permissions=["change"])
    def approve(self, request, queryset):
        return self._decide(request, queryset, approve=True)

    @admin.action(description=_("Reject (refund, release the keys)"), permissions=["change"])
    def reject(self, request, queryset):
        return self._decide(request, queryset, approve=False)


class ReviewDecisionForm(forms.Form):
    note = forms.CharField(label=_("Note"), widget=forms.Textarea(attrs={"rows": 3}),
                           help_text=_("Why; kept with the decision."))
    block_buyer = forms.BooleanField(
        label=_("Block the buyer"), required=False,
        help_text=_("Reject only: block the buyer's email, device and phone for 30 days and the IP address for "
                    "24 hours. To choose, use Reject and block on the order's review page."))
