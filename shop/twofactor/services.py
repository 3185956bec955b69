"""Who owes a code, enrolment, code checks and recovery codes (django-otp devices).

A staff member has at most one confirmed ``TOTPDevice`` (the authenticator
app) and one ``StaticDevice`` holding the recovery codes. Enrolment first
makes an unconfirmed TOTP device (its secret shown as a QR code and as text);
the first right code from the app confirms it, replaces any older
authenticator and issues a fresh set of recovery codes.
"""

from __future__ import annotations

import re
from base64 import b32encode
from datetime import datetime

import django_otp
from django.conf import settings
from django.db import transaction
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

RECOVERY_CODE_COUNT = 10
AUTHENTICATOR_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"

# What a signed-in staff member still owes before any admin page.
STEP_VERIFY = "verify"  # a code from the app or a recovery code
STEP_ENROL = "enrol"  # a superuser with 2FA required and nothing enrolled yet

_TOTP_CODE = re.compile(r"\d{6}")


class TwoFactorError(Exception):
    """A code was not accepted. ``code``: ``wrong``, ``throttled`` (the device
    refuses codes until ``until``) or ``no_enrolment`` (nothing to confirm)."""

    def __init__(self, *, code: str, until: datetime | None = None):
        super().__init__(code)
        self.code = code
        self.until = until


def twofactor_enrolled(*, user) -> bool:
    """A confirmed authenticator, or recovery codes left (what a verification can use)."""
    return (
        TOTPDevice.objects.filter(user=user, confirmed=True).exists()
        or StaticToken.objects.filter(device__user=user, device__confirmed=True).exists()
    )


def twofactor_step_owed(*, user) -> str | None:
    """``STEP_VERIFY``, ``STEP_ENROL`` or None for ``request.user`` (after
    django-otp's ``OTPMiddleware``). Only active staff can owe anything: the
    admin turns everyone else away at its login."""
    if not (user.is_authenticated and user.is_active and user.is_staff) or user.is_verified():
        return None
    if twofactor_enrolled(user=user):
        return STEP_VERIFY
    if user.is_superuser and settings.ADMIN_REQUIRE_2FA:
        return STEP_ENROL
    return None


def twofactor_applies(*, user) -> bool:
    """Whether a password sign-in by ``user`` is followed by a code step."""
    if not (user.is_active and user.is_staff):
        return False
    return (user.is_superuser and settings.ADMIN_REQUIRE_2FA) or twofactor_enrolled(user=user)


def _token_normalise(code: str) -> str:
    # People type recovery codes with spaces or dashes, and in capitals.
    return re.sub(r"[\s-]", "", code).lower()


def _throttle_check(device: Device) -> None:
    allowed, info = device.verify_is_allowed()
    if not allowed:
        raise TwoFactorError(code="throttled", until=(info or {}).get("locked_until"))


def twofactor_code_verify(*, user, code: str) -> Device:
    """The device that accepts ``code``: six digits go to the authenticator, anything
    else to the recovery codes (a recovery code works once). Raises ``TwoFactorError``."""
    token = _token_normalise(code)
    if _TOTP_CODE.fullmatch(token):
        devices = TOTPDevice.objects.filter(user=user, confirmed=True)
    else:
        devices = StaticDevice.objects.filter(user=user, confirmed=True)
    for device in devices.order_by("id"):
        _throttle_check(device)
        # django_otp.verify_token locks the device row, so a code (a recovery
        # code above all) cannot be spent twice by two requests at once.
        verified = django_otp.verify_token(user, device.persistent_id, token)
        if verified is not None:
            return verified
    raise TwoFactorError(code="wrong")


def totp_enrolment_start(*, user) -> TOTPDevice:
    """The unconfirmed authenticator ``user`` is setting up (the same one on every
    reload, so a QR code scanned earlier stays good)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=False)
    return device


def totp_secret_text(*, device: TOTPDevice) -> str:
    """The base32 secret for typing into an app by hand, in groups of four."""
    secret = b32encode(device.bin_key).decode("ascii").rstrip("=")
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def totp_enrolment_confirm(*, user, code: str) -> tuple[TOTPDevice, list[str]]:
    """Confirms the authenticator being set up with a code from it, retires any
    older one and returns ``(device, recovery codes)``. Raises ``TwoFactorError``."""
    with transaction.atomic():
        device = (TOTPDevice.objects.select_for_update()
                  .filter(user=user, confirmed=False).order_by("id").first())
        if device is None:
            raise TwoFactorError(code="no_enrolment")
        _throttle_check(device)
        # A wrong code's throttle count must be committed: decide after the block.
        verified = device.verify_token(_token_normalise(code))
        if verified:
            TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            codes = _recovery_codes_replace(user=user)
    if not verified:
        raise TwoFactorError(code="wrong")
    return device, codes


def _recovery_codes_replace(*, user) -> list[str]:
    """Call inside a transaction."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def recovery_codes_replace(*, user) -> list[str]:
    """A new set of recovery codes for an enrolled user; the old ones stop working."""
    with transaction.atomic():
        return _recovery_codes_replace(user=user)


def recovery_codes_left(*, user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def totp_enrolled(*, user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()
