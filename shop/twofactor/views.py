"""The code step after the admin's password form, enrolment, and the staff member's own page."""

from __future__ import annotations

import math
from urllib.parse import urlencode

import django_otp
import segno
from django.contrib import admin, messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST
from django_otp.plugins.otp_static.models import StaticDevice

from shop.adminlogin import admin_login_failure_record, admin_login_failures_forget, admin_login_locked
from shop.twofactor.forms import CodeForm, EnrolForm
from shop.twofactor.services import (
    STEP_ENROL,
    STEP_VERIFY,
    TwoFactorError,
    recovery_codes_left,
    recovery_codes_replace,
    totp_enrolled,
    totp_enrolment_confirm,
    totp_enrolment_start,
    totp_secret_text,
    twofactor_code_verify,
    twofactor_step_owed,
)


def _is_staff(user) -> bool:
    return user.is_authenticated and user.is_active and user.is_staff


def _next_url(request) -> str:
    url = request.POST.get("next") or request.GET.get("next") or ""
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure()):
        return url
    return reverse("admin:index")


def _with_next(name: str, next_url: str) -> str:
    return f"{reverse(name)}?{urlencode({'next': next_url})}"


def _context(request, **extra) -> dict:
    return {**admin.site.each_context(request), **extra}


def _error_text(error: TwoFactorError) -> str:
    if error.code == "throttled" and error.until is not None:
        seconds = max(1, math.ceil((error.until - timezone.now()).total_seconds()))
        return ngettext(
            "Too many wrong codes. Wait %(seconds)d second, then try again.",
            "Too many wrong codes. Wait %(seconds)d seconds, then try again.", seconds,
        ) % {"seconds": seconds}
    if error.code == "no_enrolment":
        return _("That set-up had expired. Scan the new QR code below and enter a code from it.")
    return _("That code is not right. Check the app (or the recovery code) and try again.")


def _locked_out(request) -> HttpResponse:
    # The pair (username, address) is locked: sign the session out so it cannot
    # keep guessing. AxesMiddleware replaces this with its lockout response.
    logout(request)
    return HttpResponse(status=429)


def _signed_in(request, device) -> None:
    request.session.cycle_key()
    django_otp.login(request, device)
    admin_login_failures_forget(request=request, username=request.user.get_username())


def _code_refused(request, form, error: TwoFactorError) -> HttpResponse | None:
    """A wrong code: counted as a failed sign-in; the lockout response once it locks."""
    if error.code != "no_enrolment" and admin_login_failure_record(request=request,
                                                                   username=request.user.get_username()):
        return _locked_out(request)
    form.add_error("code", _error_text(error))
    return None


@never_cache
@sensitive_post_parameters("code")
def verify(request):
    """After the password: a code from the authenticator app, or a recovery code."""
    user = request.user
    if not _is_staff(user):
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    next_url = _next_url(request)
    step = twofactor_step_owed(user=user)
    if step == STEP_ENROL:
        return HttpResponseRedirect(_with_next("admin-2fa-enrol", next_url))
    if step is None:
        return HttpResponseRedirect(next_url)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if admin_login_locked(request=request, username=user.get_username()):
            return _locked_out(request)
        try:
            device = twofactor_code_verify(user=user, code=form.cleaned_data["code"])
        except TwoFactorError as error:
            refused = _code_refused(request, form, error)
            if refused is not None:
                return refused
        else:
            _signed_in(request, device)
            if isinstance(device, StaticDevice):
                left = recovery_codes_left(user=user)
                messages.warning(request, ngettext(
                    "You signed in with a recovery code, which is now used up. %(count)d recovery code is left.",
                    "You signed in with a recovery code, which is now used up. %(count)d recovery codes are left.",
                    left,
                ) % {"count": left})
            return HttpResponseRedirect(next_url)
    return render(request, "admin/twofactor/verify.html",
                  _context(request, title=_("Two-factor sign-in"), form=form, next=next_url))


@never_cache
@sensitive_post_parameters("code")
def enrol(request):
    """Set up an authenticator app (QR code, or the secret typed in), confirmed
    with a code from it; the answer shows the new recovery codes, once."""
    user = request.user
    if not _is_staff(user):
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    next_url = _next_url(request)
    if twofactor_step_owed(user=user) == STEP_VERIFY:
        # Enrolled already: a new authenticator only after a code from the old one.
        return HttpResponseRedirect(_with_next("admin-2fa-verify", next_url))
    form = EnrolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if admin_login_locked(request=request, username=user.get_username()):
            return _locked_out(request)
        try:
            device, codes = totp_enrolment_confirm(user=user, code=form.cleaned_data["code"])
        except TwoFactorError as error:
            refused = _code_refused(request, form, error)
            if refused is not None:
                return refused
        else:
            _signed_in(request, device)
            return _recovery_codes_page(request, codes=codes, next_url=next_url)
    device = totp_enrolment_start(user=user)
    qr_svg = segno.make(device.config_url, error="m").svg_inline(scale=4, border=2, dark="#111", omitsize=True)
    return render(request, "admin/twofactor/enrol.html", _context(
        request, title=_("Set up two-factor sign-in"), form=form, next=next_url, qr_svg=qr_svg,
        secret=totp_secret_text(device=device), replacing=totp_enrolled(user=user),
    ))


def _recovery_codes_page(request, *, codes: list[str], next_url: str) -> HttpResponse:
    # Rendered in the answer to the POST and kept nowhere else for showing: a reload cannot bring them back.
    return render(request, "admin/twofactor/recovery_codes.html",
                  _context(request, title=_("Your recovery codes"), codes=codes, next=next_url))


@never_cache
@require_GET
def manage(request):
    """The staff member's own two-factor page (behind the code step like every admin page)."""
    user = request.user
    if not _is_staff(user):
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    return render(request, "admin/twofactor/manage.html", _context(
        request, title=_("Two-factor sign-in"), enrolled=totp_enrolled(user=user),
        codes_left=recovery_codes_left(user=user), next=reverse("admin-2fa"),
    ))


@never_cache
@require_POST
def recovery_codes(request):
    """A new set of recovery codes; the old ones stop working."""
    user = request.user
    if not _is_staff(user):
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    if not (totp_enrolled(user=user) and user.is_verified()):
        return HttpResponseRedirect(reverse("admin-2fa"))
    codes = recovery_codes_replace(user=user)
    return _recovery_codes_page(request, codes=codes, next_url=reverse("admin-2fa"))
