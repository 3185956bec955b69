"""The shop's own admin site: its name in the header, the dashboard as the home
page, and the models grouped the way an owner works (sales, stock, risk,
delivery, settings) instead of by Django app, with the ops-only tables last.

Every ``@admin.register`` keeps registering on ``admin.site``: Django builds
``admin.site`` from ``default_site`` of the admin's AppConfig, which is
``ShopAdminConfig`` below (INSTALLED_APPS names it in place of
``django.contrib.admin``). Only ``get_app_list`` without an app label is
regrouped; ``/admin/<app_label>/`` pages still list one app's models.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Section:
    key: str
    name: str
    # Shown folded on the home page (it is always the last section).
    collapsed: bool = False


OVERVIEW = Section("overview", _("Overview"))
SALES = Section("sales", _("Sales"))
STOCK = Section("stock", _("Stock"))
RISK = Section("risk", _("Risk"))
DELIVERY = Section("delivery", _("Delivery"))
SETTINGS = Section("settings", _("Settings"))
OPS = Section("ops", _("Advanced (ops)"), collapsed=True)
SECTIONS = (OVERVIEW, SALES, STOCK, RISK, DELIVERY, SETTINGS, OPS)

# (app_label, model_name) → (section, the owner's name for the list), in the
# order shown within a section. Audit trails, raw provider notices, scoring
# internals and third-party logs are for ops: they go to OPS.
PLACES: dict[tuple[str, str], tuple[Section, str]] = {
    ("shop", "order"): (SALES, _("Orders")),
    ("shop", "manualqueueorder"): (SALES, _("Manual fulfilment queue")),
    ("payments", "payment"): (SALES, _("Payments")),
    ("payments", "refund"): (SALES, _("Refunds")),
    ("shop", "product"): (SALES, _("Products")),
    ("shop", "category"): (SALES, _("Categories")),
    ("shop", "coupon"): (SALES, _("Coupons")),
    ("exports", "export"): (SALES, _("Exports")),
    ("inventory", "cardkey"): (STOCK, _("Card keys")),
    ("inventory", "importbatch"): (STOCK, _("Key imports")),
    ("inventory", "keypolicy"): (STOCK, _("Key policies")),
    ("inventory", "keyactivation"): (STOCK, _("Key activations")),
    ("inventory", "keyredemption"): (STOCK, _("Key redemptions")),
    ("shop", "stockalertrequest"): (STOCK, _("Back-in-stock requests")),
    ("riskctl", "reviewitem"): (RISK, _("Review queue")),
    ("riskctl", "rule"): (RISK, _("Risk rules")),
    ("riskctl", "listentry"): (RISK, _("Block and allow lists")),
    ("riskctl", "purchaselimit"): (RISK, _("Purchase limits")),
    ("riskctl", "thresholds"): (RISK, _("Score thresholds")),
    ("delivery", "delivery"): (DELIVERY, _("Deliveries")),
    ("delivery", "owneralert"): (DELIVERY, _("Owner alerts")),
    ("shop", "keyreport"): (DELIVERY, _("Key reports")),
    ("delivery", "webhookdelivery"): (DELIVERY, _("Webhook deliveries")),
    ("payments", "paymentmethod"): (SETTINGS, _("Payment methods")),
    ("shop", "shopprofile"): (SETTINGS, _("Notice and contact")),
    ("shop", "faqentry"): (SETTINGS, _("FAQ")),
    ("delivery", "webhookendpoint"): (SETTINGS, _("Webhook endpoints")),
    ("inventory", "merchantapikey"): (SETTINGS, _("Merchant API keys")),
    ("auth", "user"): (SETTINGS, _("Users")),
    ("auth", "group"): (SETTINGS, _("Groups")),
    ("shop", "orderevent"): (OPS, _("Order timelines")),
    ("shop", "orderline"): (OPS, _("Order lines")),
    ("shop", "keyreveal"): (OPS, _("Key reveals (audit)")),
    ("shop", "signinlink"): (OPS, _("Sign-in links")),
    ("payments", "paymentevent"): (OPS, _("Raw payment notices")),
    ("riskctl", "assessment"): (OPS, _("Risk assessments")),
    ("riskctl", "riskevent"): (OPS, _("Risk events")),
    ("inventory", "keyauditevent"): (OPS, _("Key audit events")),
    ("delivery", "sweeprun"): (OPS, _("Sweep runs")),
    ("axes", "accessattempt"): (OPS, _("Login attempts")),
    ("axes", "accesslog"): (OPS, _("Login log")),
    ("axes", "accessfailurelog"): (OPS, _("Login failures")),
    ("django_rq", "queue"): (OPS, _("Background jobs")),
}
# A model registered later and not placed above lands by its app (third-party
# apps, e.g. django-otp's devices, in OPS) rather than disappearing.
APP_SECTIONS = {"shop": SALES, "payments": SALES, "inventory": STOCK, "riskctl": RISK, "delivery": DELIVERY,
                "auth": SETTINGS}


def model_section(*, app_label: str, model_name: str) -> Section:
    place = PLACES.get((app_label, model_name))
    return place[0] if place else APP_SECTIONS.get(app_label, OPS)


def _link(*, name, object_name: str, url: str) -> dict:
    """A sidebar row that is a page, not a model (no "model" key)."""
    return {"name": name, "object_name": object_name, "admin_url": url, "add_url": None, "perms": {},
            "view_only": True}


def app_list_by_section(*, app_list: list[dict], index_url: str, extra: dict[Section, list[dict]]) -> list[dict]:
    """Django's per-app list (each app's ``models``) → one entry per section,
    shaped like an app so admin/app_list.html and nav_sidebar.html render it.
    Sections with nothing the user may see are left out."""
    rows: dict[Section, list[tuple[tuple, dict]]] = {section: [] for section in SECTIONS}
    order = list(PLACES)
    for app in app_list:
        for model in app["models"]:
            meta = model["model"]._meta
            key = (meta.app_label, meta.model_name)
            section = model_section(app_label=meta.app_label, model_name=meta.model_name)
            if key in PLACES:
                model = {**model, "name": PLACES[key][1]}
                rank = (0, order.index(key), "")
            else:
                rank = (1, 0, str(model["name"]))
            rows[section].append((rank, model))
    result = []
    for section in SECTIONS:
        models = [*extra.get(section, []), *(model for _, model in sorted(rows[section], key=lambda r: r[0]))]
        if not models:
            continue
        result.append({
            "name": section.name,
            # Used for the CSS class (app-<label>) and row ids; no real app has these.
            "app_label": f"kd-{section.key}",
            "app_url": f"{index_url}#kd-section-{section.key}",
            "has_module_perms": True,
            "models": models,
            "section": section.key,
            "collapsed": section.collapsed,
        })
    return result


class ShopAdminSite(admin.AdminSite):
    index_title = _("Dashboard")
    index_template = "admin/index.html"

    # Read at each request, so SHOP_NAME set in the environment or a test shows.
    @property
    def site_header(self):
        return settings.SHOP_NAME

    @property
    def site_title(self):
        return settings.SHOP_NAME

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        if app_label is not None:
            return app_list
        index_url = reverse("admin:index", current_app=self.name)
        extra = {OVERVIEW: [_link(name=_("Dashboard"), object_name="Dashboard", url=f"{index_url}#kd-dashboard")]}
        registered = {(m._meta.app_label, m._meta.model_name) for m in self._registry}
        if request.user.is_superuser and ("django_rq", "queue") not in registered:
            try:
                extra[OPS] = [_link(name=_("Background jobs"), object_name="RQ", url=reverse("rq_home"))]
            except NoReverseMatch:
                pass
        return app_list_by_section(app_list=app_list, index_url=index_url, extra=extra)

    def index(self, request, extra_context=None):
        # The dashboard reads every app's tables: imported here, once the apps are ready.
        from shop.ops.dashboard import dashboard_context

        return super().index(request, extra_context={**dashboard_context(), **(extra_context or {})})


class ShopAdminConfig(AdminConfig):
    """``django.contrib.admin`` with ``admin.site`` a ShopAdminSite."""

    default_site = "shop.adminsite.ShopAdminSite"
