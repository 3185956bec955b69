"""What every buyer page's frame (templates/base.html) shows besides the page:
the shop's notice and its contact channels."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from shop.profile import (
    NOTICE_DISMISSED_COOKIE,
    contact_url,
    profile_contacts,
    profile_notice,
    profile_support_hours,
    shop_profile,
)


def _shop_frame(request) -> dict:
    # Once per request, however many templates the request renders (a page
    # and its fragments): the profile is one cache read.
    frame = getattr(request, "_shop_frame", None)
    if frame is None:
        profile = shop_profile()
        hours, hours_lang = profile_support_hours(profile)
        frame = {
            "profile": profile,
            "notice": profile_notice(profile, dismissed=request.COOKIES.get(NOTICE_DISMISSED_COOKIE, "")),
            "contacts": profile_contacts(profile),
            "wechat_qr_url": profile.wechat_qr.url if profile is not None and profile.wechat_qr else "",
            "support_hours": hours,
            "support_hours_lang": hours_lang,
            "contact_url": contact_url(),
            "notice_cookie": NOTICE_DISMISSED_COOKIE,
        }
        request._shop_frame = frame
    return frame


def shop_frame(request) -> dict:
    """``shop_frame``: the profile, the notice to show (or None), the channels
    set (maybe none), the WeChat QR's URL, the support hours and the URL of
    the contact section. Lazy: a template that shows none of it (the admin's)
    reads nothing."""
    return {"shop_frame": SimpleLazyObject(lambda: _shop_frame(request))}
