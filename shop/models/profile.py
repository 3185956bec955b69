"""The shop's buyer-facing settings: ShopProfile (notice and contact channels) and FaqEntry."""

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from shop.models.localised import LocalisedText, _localised_either

QQ_VALIDATOR = RegexValidator(r"^[0-9]{5,12}$", _("A QQ number is 5 to 12 digits."))
TELEGRAM_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9_]{5,32}$", _("A Telegram username is 5 to 32 letters, digits or underscores (without the @)."))
# WeChat's own rule (6-20, a letter first, then letters, digits, _ or -), or
# the QQ or phone number older accounts use as their ID.
WECHAT_VALIDATOR = RegexValidator(
    r"^([A-Za-z][-_A-Za-z0-9]{5,19}|[0-9]{5,15})$",
    _("A WeChat ID is 6 to 20 letters, digits, _ or -, starting with a letter (or the number the account uses)."))


class ShopProfile(models.Model):
    """The shop's one row of buyer-facing settings: the notice (公告) and the
    ways to reach the owner. Read through ``shop.profile.shop_profile``
    (cached), written in the admin."""

    # One row, always id 1: the database refuses a second.
    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    notice_on = models.BooleanField(_("show the notice"), default=False)
    notice = models.TextField(_("notice (English)"), blank=True,
                              help_text=_("Plain text; line breaks are kept. Shown under the header of every page."))
    notice_zh = models.TextField(_("notice (Chinese)"), blank=True, help_text=_("Chinese (Simplified) notice."))
    notice_until = models.DateField(_("show until"), null=True, blank=True,
                                    help_text=_("Last day the notice shows (the shop's time zone); empty: no end."))
    contact_email = models.EmailField(_("email"), blank=True, help_text=_("Where buyers write to you."))
    contact_qq = models.CharField(_("QQ number"), max_length=12, blank=True, validators=[QQ_VALIDATOR])
    wechat_id = models.CharField(_("WeChat ID"), max_length=20, blank=True, validators=[WECHAT_VALIDATOR])
    wechat_qr = models.ImageField(_("WeChat QR code"), upload_to="profile/", blank=True,
                                  help_text=_("An image of your WeChat QR code; scaled down to 600 px."))
    telegram = models.CharField(_("Telegram username"), max_length=32, blank=True, validators=[TELEGRAM_VALIDATOR],
                                help_text=_("Without the @; buyers get a t.me link."))
    support_hours = models.CharField(_("support hours (English)"), max_length=200, blank=True,
                                     help_text=_("For example: Every day, 9:00-22:00 (Beijing time)."))
    support_hours_zh = models.CharField(_("support hours (Chinese)"), max_length=200, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("shop profile")
        verbose_name_plural = _("shop profile")
        constraints = [models.CheckConstraint(condition=Q(id=1), name="shopprofile_singleton")]

    def __str__(self):
        return str(_("Notice and contact"))


class FaqEntry(models.Model):
    """One question on /faq/, in English and Chinese; either side may be
    empty, and the page falls back to the other."""

    question = models.CharField(_("question (English)"), max_length=300, blank=True)
    question_zh = models.CharField(_("question (Chinese)"), max_length=300, blank=True)
    answer = models.TextField(_("answer (English)"), blank=True, help_text=_("Plain text; line breaks and links "
                                                                            "(https://…) are kept."))
    answer_zh = models.TextField(_("answer (Chinese)"), blank=True)
    position = models.PositiveIntegerField(_("position"), default=0, help_text=_("Lower comes first."))
    active = models.BooleanField(_("shown"), default=True)

    class Meta:
        verbose_name = _("FAQ entry")
        verbose_name_plural = _("FAQ")
        constraints = [
            models.CheckConstraint(condition=~Q(question="") | ~Q(question_zh=""), name="faqentry_has_question",
                                   violation_error_message=_("Write the question in English, Chinese or both.")),
            models.CheckConstraint(condition=~Q(answer="") | ~Q(answer_zh=""), name="faqentry_has_answer",
                                   violation_error_message=_("Write the answer in English, Chinese or both.")),
        ]

    def __str__(self):
        return self.question or self.question_zh

    @property
    def display_question(self) -> LocalisedText:
        return _localised_either(self, "question")

    @property
    def display_answer(self) -> LocalisedText:
        return _localised_either(self, "answer")
