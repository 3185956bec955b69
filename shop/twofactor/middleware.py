"""Keeps the admin out of reach until a staff member who owes a code has given it."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.deprecation import MiddlewareMixin

from shop.project.browser_middleware import BrowserOnly
from shop.twofactor.services import STEP_VERIFY, twofactor_step_owed


def _open_paths() -> set[str]:
    # What a signed-in but unverified staff member may still reach: signing
    # out, the password form (the admin sends them on) and the code steps.
    return {reverse("admin:login"), reverse("admin:logout"), reverse("admin-2fa-verify"), reverse("admin-2fa-enrol")}


class AdminTwoFactorMiddleware(BrowserOnly, MiddlewareMixin):
    """Every path under the admin's prefix (``reverse("admin:index")``: the admin
    site's own pages, custom admin views, /admin/django-rq/, /admin/dashboard/)
    redirects to the code form, or to enrolment, while ``request.user`` owes a
    code. By path rather than by ``AdminSite``, so it holds whatever site is
    mounted there. Goes after django-otp's ``OTPMiddleware``."""

    def process_request(self, request):
        path = request.path_info
        if not path.startswith(reverse("admin:index")) or path in _open_paths():
            return None
        user = getattr(request, "user", None)
        if user is None:
            return None
        step = twofactor_step_owed(user=user)
        if step is None:
            return None
        target = reverse("admin-2fa-verify" if step == STEP_VERIFY else "admin-2fa-enrol")
        return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
