"""The shop profile (notice 公告 and contact channels, one row) and the FAQ,
whose entries start as the answers the FAQ page had built in (zh and en)."""

import django.core.validators
import django.utils.timezone
from django.db import migrations, models

# The built-in answers, in both languages: a new shop's /faq/ is not empty.
DEFAULT_FAQ = [
    {
        "question": "When do I get my key?",
        "question_zh": "什么时候能收到卡密？",
        "answer": "Seconds after the payment is confirmed: on the order page, and by email "
                  "(and SMS if you gave a phone number).",
        "answer_zh": "付款确认后数秒内：显示在订单页面，并发送到邮箱（如填写了手机号，也会发送短信）。",
    },
    {
        "question": "I closed the page. How do I see my order again?",
        "question_zh": "关闭了页面，怎样再次查看订单？",
        "answer": "Use “Find my order” at the top of the page with your order number, email and query password, "
                  "or ask for a sign-in link by email.",
        "answer_zh": "点击页面顶部的“查询订单”，输入订单号、邮箱和查询密码，或通过邮件获取登录链接。",
    },
    {
        "question": "The key does not work.",
        "question_zh": "卡密无法使用。",
        "answer": "Press “Report a problem with this key” next to it on the order page. Some products replace "
                  "the key at once; otherwise our staff check it and reply by email.",
        "answer_zh": "在订单页面点击卡密旁的“报告此卡密有问题”。部分商品会立即更换卡密；其他情况由客服核实并通过邮件回复。",
    },
    {
        "question": "My order says it is being checked.",
        "question_zh": "订单显示正在审核。",
        "answer": "Some orders are checked by a person before the key is shown. Your key is set aside for you "
                  "meanwhile.",
        "answer_zh": "部分订单在显示卡密前需要人工审核，审核期间卡密已为您预留。",
    },
]


def faq_defaults_create(apps, schema_editor):
    """Also run by shop.profile.faq_defaults_create (demo, tests). A shop
    that has entries keeps them."""
    FaqEntry = apps.get_model("shop", "FaqEntry")
    if FaqEntry.objects.exists():
        return
    FaqEntry.objects.bulk_create([FaqEntry(position=(n + 1) * 10, **entry) for n, entry in enumerate(DEFAULT_FAQ)])


def faq_defaults_remove(apps, schema_editor):
    FaqEntry = apps.get_model("shop", "FaqEntry")
    for entry in DEFAULT_FAQ:
        FaqEntry.objects.filter(question=entry["question"], question_zh=entry["question_zh"]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("shop", "0008_catalogue_media"),
    ]

    operations = [
        migrations.CreateModel(
            name="FaqEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("question", models.CharField(blank=True, max_length=300, verbose_name="question (English)")),
                ("question_zh", models.CharField(blank=True, max_length=300, verbose_name="question (Chinese)")),
                ("answer", models.TextField(blank=True, help_text="Plain text; line breaks and links (https://…) are kept.", verbose_name="answer (English)")),
                ("answer_zh", models.TextField(blank=True, verbose_name="answer (Chinese)")),
                ("position", models.PositiveIntegerField(default=0, help_text="Lower comes first.", verbose_name="position")),
                ("active", models.BooleanField(default=True, verbose_name="shown")),
            ],
            options={
                "verbose_name": "FAQ entry",
                "verbose_name_plural": "FAQ",
                "constraints": [
                    models.CheckConstraint(condition=models.Q(models.Q(("question", ""), _negated=True), models.Q(("question_zh", ""), _negated=True), _connector="OR"), name="faqentry_has_question", violation_error_message="Write the question in English, Chinese or both."),
                    models.CheckConstraint(condition=models.Q(models.Q(("answer", ""), _negated=True), models.Q(("answer_zh", ""), _negated=True), _connector="OR"), name="faqentry_has_answer", violation_error_message="Write the answer in English, Chinese or both."),
                ],
            },
        ),
        migrations.CreateModel(
            name="ShopProfile",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, editable=False, primary_key=True, serialize=False)),
                ("notice_on", models.BooleanField(default=False, verbose_name="show the notice")),
                ("notice", models.TextField(blank=True, help_text="Plain text; line breaks are kept. Shown under the header of every page.", verbose_name="notice (English)")),
                ("notice_zh", models.TextField(blank=True, help_text="Chinese (Simplified) notice.", verbose_name="notice (Chinese)")),
                ("notice_until", models.DateField(blank=True, help_text="Last day the notice shows (the shop's time zone); empty: no end.", null=True, verbose_name="show until")),
                ("contact_email", models.EmailField(blank=True, help_text="Where buyers write to you.", max_length=254, verbose_name="email")),
                ("contact_qq", models.CharField(blank=True, max_length=12, validators=[django.core.validators.RegexValidator("^[0-9]{5,12}$", "A QQ number is 5 to 12 digits.")], verbose_name="QQ number")),
                ("wechat_id", models.CharField(blank=True, max_length=20, validators=[django.core.validators.RegexValidator("^([A-Za-z][-_A-Za-z0-9]{5,19}|[0-9]{5,15})$", "A WeChat ID is 6 to 20 letters, digits, _ or -, starting with a letter (or the number the account uses).")], verbose_name="WeChat ID")),
                ("wechat_qr", models.ImageField(blank=True, help_text="An image of your WeChat QR code; scaled down to 600 px.", upload_to="profile/", verbose_name="WeChat QR code")),
                ("telegram", models.CharField(blank=True, help_text="Without the @; buyers get a t.me link.", max_length=32, validators=[django.core.validators.RegexValidator("^[A-Za-z0-9_]{5,32}$", "A Telegram username is 5 to 32 letters, digits or underscores (without the @).")], verbose_name="Telegram username")),
                ("support_hours", models.CharField(blank=True, help_text="For example: Every day, 9:00-22:00 (Beijing time).", max_length=200, verbose_name="support hours (English)")),
                ("support_hours_zh", models.CharField(blank=True, max_length=200, verbose_name="support hours (Chinese)")),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "verbose_name": "shop profile",
                "verbose_name_plural": "shop profile",
                "constraints": [models.CheckConstraint(condition=models.Q(("id", 1)), name="shopprofile_singleton")],
            },
        ),
        migrations.RunPython(faq_defaults_create, faq_defaults_remove),
    ]
