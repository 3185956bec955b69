"""The shop's profile: the notice (公告) under the header and the ways to reach
the owner (email, QQ, WeChat, Telegram), and the FAQ.

Every buyer page shows the notice and the contact channels, so the profile is
read through Django's cache (Redis) rather than with a query per page: one
cache read per request, and admin saves drop the cached copy at once for every
process (a per-process copy would keep showing an old notice on the other web
replicas). While Redis is down the cache reads empty and each page reads the
row: slower, never wrong.
"""

from __future__ import annotations

import hashlib
import importlib
import io
from dataclasses import dataclass

from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from shop.images import image_check
from shop.models import FaqEntry, ShopProfile
from shop.models.localised import _localised_either

# Bumped when the cached shape changes, so a deploy never reads an old one.
PROFILE_CACHE_KEY = "shop:profile:v1"
# Edits outside the admin (a shell, another tool) show within this long.
PROFILE_CACHE_SECONDS = 300
# Where the contact channels are listed; the footer and "contact us" link here.
CONTACT_ANCHOR = "contact"
# The QR image is stored at most this many pixels on its longer side.
QR_MAX_PX = 600
QR_FOLDER = "profile"
# Cookie the notice's close button sets to the notice's version.
NOTICE_DISMISSED_COOKIE = "kd_notice_closed"


@dataclass(frozen=True)
class Notice:
    text: str
    lang: str  # the language of ``text`` (the other one when the buyer's side is empty)
    version: str  # changes with the text: a closed notice shows again once edited


@dataclass(frozen=True)
class ContactChannel:
    kind: str  # email | qq | wechat | telegram
    label: str
    value: str
    href: str = ""  # a link where one makes sense (mailto:, t.me)
    copy: bool = False  # no link: the buyer copies the number or ID


def _profile_to_cache(profile: ShopProfile | None) -> dict | None:
    if profile is None:
        return None
    values = {}
    for field in ShopProfile._meta.concrete_fields:
        value = getattr(profile, field.attname)
        values[field.attname] = value.name if isinstance(field, models.FileField) else value
    return values


def _profile_from_cache(values: dict | None) -> ShopProfile | None:
    if values is None:
        return None
    known = {field.attname for field in ShopProfile._meta.concrete_fields}
    return ShopProfile(**{name: value for name, value in values.items() if name in known})


def shop_profile() -> ShopProfile | None:
    """The profile row (None until the owner saves one), cached."""
    # A plain dict, not the pickled model: a deploy that adds a field still reads it.
    cached = cache.get(PROFILE_CACHE_KEY)
    if cached is not None:
        return _profile_from_cache(cached["profile"])
    profile = ShopProfile.objects.filter(pk=1).first()
    cache.set(PROFILE_CACHE_KEY, {"profile": _profile_to_cache(profile)}, PROFILE_CACHE_SECONDS)
    return profile


def shop_profile_forget() -> None:
    """Drop the cached profile: now, and again once the writing transaction
    commits (a page read in between would otherwise cache the old row)."""
    cache.delete(PROFILE_CACHE_KEY)
    transaction.on_commit(lambda: cache.delete(PROFILE_CACHE_KEY))


def profile_notice(profile: ShopProfile | None, *, dismissed: str = "") -> Notice | None:
    """The notice to show now in the active language, or None: switched off,
    past its last day, empty, or closed by this buyer (``dismissed`` is the
    version their close button stored)."""
    if profile is None or not profile.notice_on:
        return None
    if profile.notice_until is not None and timezone.localdate() > profile.notice_until:
        return None
    text, lang = _localised_either(profile, "notice")
    text = text.strip()
    if not text:
        return None
    version = hashlib.sha256(f"{profile.notice}\x00{profile.notice_zh}".encode()).hexdigest()[:12]
    if dismissed == version:
        return None
    return Notice(text=text, lang=lang, version=version)


def profile_contacts(profile: ShopProfile | None) -> list[ContactChannel]:
    """The channels the owner filled in, in the order buyers of a 发卡 shop look for them."""
    if profile is None:
        return []
    channels = []
    if profile.contact_qq:
        channels.append(ContactChannel("qq", str(_("QQ")), profile.contact_qq, copy=True))
    if profile.wechat_id:
        channels.append(ContactChannel("wechat", str(_("WeChat")), profile.wechat_id, copy=True))
    elif profile.wechat_qr:  # a QR code without an ID: the contact section shows it
        channels.append(ContactChannel("wechat", str(_("WeChat")), str(_("Scan our QR code")), href=contact_url()))
    if profile.telegram:
        channels.append(ContactChannel("telegram", "Telegram", f"@{profile.telegram}",
                                       href=f"https://t.me/{profile.telegram}"))
    if profile.contact_email:
        channels.append(ContactChannel("email", str(_("Email")), profile.contact_email,
                                       href=f"mailto:{profile.contact_email}"))
    return channels


def profile_support_hours(profile: ShopProfile | None) -> tuple[str, str]:
    if profile is None:
        return "", "en"
    return _localised_either(profile, "support_hours")


def contact_url() -> str:
    """The page section that lists every channel."""
    return f"{reverse('shop:faq')}#{CONTACT_ANCHOR}"


def contact_reachable() -> bool:
    """Whether the owner set any channel, i.e. whether "contact us" can be said."""
    return bool(profile_contacts(shop_profile()))


def contact_sentence(*, reachable: str, unreachable: str) -> str:
    """A buyer-facing sentence that sends the buyer to the shop: ``reachable``
    with a link to the contact channels when the owner set any; otherwise
    ``unreachable``, which says what to do without promising a contact that
    is not there. Both are plain text; the result is safe HTML."""
    if not contact_reachable():
        return unreachable
    return format_html('{} <a href="{}">{}</a>', reachable, contact_url(), _("Our contact details"))


def faq_entries() -> list[FaqEntry]:
    """The shown FAQ entries, in the owner's order."""
    return list(FaqEntry.objects.filter(active=True).order_by("position", "id"))


def qr_image_fit(*, data: bytes, max_px: int = QR_MAX_PX) -> ContentFile:
    """The uploaded QR picture as it is stored: checked like product pictures
    (shop.images: a readable JPEG, PNG, WebP or GIF within the size limits,
    else ImageRejected, a ValidationError in the owner's words), turned
    upright, without its metadata, at most ``max_px`` on its longer side, and
    PNG so the code's edges stay sharp. Named by its content: /media/ lets
    browsers keep it for a year, so a new picture needs a new address."""
    from PIL import Image, ImageOps

    image_check(data=data)
    with Image.open(io.BytesIO(data)) as original:
        original.seek(0)
        image = ImageOps.exif_transpose(original)
        keep_alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
        image = image.convert("RGBA" if keep_alpha else "RGB")
    image.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    png = out.getvalue()
    return ContentFile(png, name=f"wechat-qr-{hashlib.sha256(png).hexdigest()[:32]}.png")


def profile_qr_store(*, profile: ShopProfile, picture: ContentFile) -> str:
    """Write a picture from ``qr_image_fit`` once under its name and point the
    profile at it (the caller saves). The same picture again is the same file."""
    storage = profile.wechat_qr.storage
    name = f"{QR_FOLDER}/{picture.name}"
    if not storage.exists(name):
        saved = storage.save(name, picture)
        assert saved == name, (saved, name)  # a storage that renames would break the hashed address
    profile.wechat_qr = name
    return name


def faq_defaults_create() -> None:
    """The built-in answers as FAQ entries, unless the shop has some already:
    the data migration's own step (it holds the texts), for demo and tests
    (transactional tests empty the tables the migration filled)."""
    from django.apps import apps

    importlib.import_module("shop.migrations.0009_shop_profile").faq_defaults_create(apps, None)


def _demo_qr_png(text: str) -> bytes:
    import segno

    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=8, border=2)
    return out.getvalue()


def demo_profile() -> ShopProfile:
    """The demo shop's notice and contact channels (``manage.py demo``).
    Idempotent: run again, it rewrites the same values and keeps one QR file."""
    profile, _created = ShopProfile.objects.get_or_create(pk=1)
    profile.notice_on = True
    profile.notice = ("Welcome! Keys are delivered automatically within seconds of payment, day and night.\n"
                      "Problems with a key? Report it on your order page, or contact us on QQ or Telegram.")
    profile.notice_zh = ("欢迎光临！付款后卡密秒发，24 小时自动发货。\n"
                         "卡密有问题？请在订单页面报告，或通过 QQ、Telegram 联系客服。")
    profile.notice_until = None
    profile.contact_email = "support@kamidrop.example"
    profile.contact_qq = "10001234"
    profile.wechat_id = "kamidrop_shop"
    profile.telegram = "kamidrop_support"
    profile.support_hours = "Every day, 9:00–23:00 (Beijing time)"
    profile.support_hours_zh = "每天 9:00–23:00（北京时间）"
    qr = _demo_qr_png(f"https://u.wechat.com/{profile.wechat_id}")
    profile_qr_store(profile=profile, picture=qr_image_fit(data=qr))
    profile.updated_at = timezone.now()
    profile.save()
    faq_defaults_create()
    shop_profile_forget()
    return profile
