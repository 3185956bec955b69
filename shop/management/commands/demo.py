"""Load the demo shop: categories, products in English and Chinese with
pictures and Markdown descriptions, keys, the notice and contact channels,
and an admin login. Idempotent: a second run tops stock up and changes
nothing the owner filled in."""

import io
import secrets
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from PIL import Image, ImageChops, ImageDraw, ImageFont

from inventory.selectors import keys_available_count
from inventory.services import keys_import
from shop.images import product_image_apply
from shop.models import Category, ManualField, Product, ProductKind
from shop.profile import demo_profile

DEMO_CATEGORIES = [
    {"slug": "game-cards", "name": "Game cards", "name_zh": "游戏点卡", "position": 10},
    {"slug": "software", "name": "Software licences", "name_zh": "软件授权", "position": 20},
    {"slug": "memberships", "name": "Memberships", "name_zh": "会员充值", "position": 30},
    {"slug": "gift-cards", "name": "Gift cards", "name_zh": "礼品卡", "position": 40},
]

DEMO_PRODUCTS = [
    {
        "slug": "steam-wallet-50",
        "category": "game-cards",
        "name": "Steam Wallet Code ¥50",
        "name_zh": "Steam 钱包充值码 ¥50",
        "description": "A **¥50** Steam Wallet code for the China region.\n\n"
                       "- Adds funds to your Steam Wallet, never expires\n"
                       "- Works for games, DLC and the Community Market\n\n"
                       "Delivered automatically, seconds after payment.",
        "description_zh": "国区 Steam 钱包充值码 **¥50**。\n\n"
                          "- 充入 Steam 钱包余额，永久有效\n"
                          "- 可购买游戏、DLC 及社区市场物品\n\n"
                          "付款后自动发货，秒到账。",
        "usage_notes": "1. Open Steam → **Account** → **Add funds**.\n"
                       "2. Choose *Redeem a Steam Gift Card or Wallet Code* and paste the code.",
        "usage_notes_zh": "1. 打开 Steam →**账户**→**添加资金**。\n"
                          "2. 选择*兑换 Steam 礼品卡或钱包充值码*，粘贴卡密即可。",
        "price": Decimal("50.00"),
        "max_per_order": 5,
        "prefix": "STM",
        "colours": ("#1b2838", "#2a75bb"),
    },
    {
        "slug": "game-points-1000",
        "category": "game-cards",
        "name": "Game Points 1000",
        "name_zh": "游戏点券 1000 点",
        "description": "**1000 points** for in-game purchases: skins, passes and items.\n\n"
                       "Redeem on the game's official top-up page.",
        "description_zh": "**1000 点券**，可在游戏内购买皮肤、通行证和道具。\n\n"
                          "在游戏官方充值页面兑换。",
        "usage_notes": "Open the game's top-up page, choose **Redeem a card** and enter the key.",
        "usage_notes_zh": "打开游戏官方充值页面，选择**卡密兑换**，输入卡密。",
        "price": Decimal("98.00"),
        "max_per_order": 10,
        "prefix": "GPT",
        "colours": ("#7c2d12", "#f97316"),
    },
    {
        "slug": "vpn-pro-1y",
        "category": "software",
        "name": "VPN Pro — 1 year licence",
        "name_zh": "VPN Pro 一年授权",
        "description": "A one-year licence for **VPN Pro** on up to 5 devices "
                       "(Windows, macOS, Android, iOS).\n\n"
                       "Renewals stack: a second key adds another year.",
        "description_zh": "**VPN Pro** 一年授权，最多 5 台设备同时使用（Windows、macOS、Android、iOS）。\n\n"
                          "可叠加续期：再买一个卡密即再加一年。",
        "usage_notes": "Paste the licence key into the app under **Settings → Licence**.",
        "usage_notes_zh": "在软件的**设置 → 授权**中粘贴授权码。",
        "price": Decimal("99.00"),
        "max_per_order": 3,
        "prefix": "VPN",
        "colours": ("#064e3b", "#10b981"),
    },
    {
        "slug": "office-suite-lifetime",
        "category": "software",
        "name": "Office Suite — lifetime key",
        "name_zh": "办公套件 永久激活码",
        "description": "A lifetime activation key for **Office Suite** on one PC.\n\n"
                       "### Included\n- Writer, Sheets and Slides\n- Free updates within the version",
        "description_zh": "**办公套件**永久激活码，限一台电脑。\n\n"
                          "### 包含\n- 文字、表格、演示\n- 本版本内免费更新",
        "usage_notes": "Install the suite, open **Help → Activate** and enter the key.",
        "usage_notes_zh": "安装后打开**帮助 → 激活**，输入激活码。",
        "price": Decimal("129.00"),
        "max_per_order": 2,
        "prefix": "OFS",
        "colours": ("#1e3a8a", "#6366f1"),
    },
    {
        "slug": "music-vip-30d",
        "category": "memberships",
        "name": "Music VIP 30 days",
        "name_zh": "音乐 VIP 月卡（30 天）",
        "description": "A **30-day** music membership: lossless streaming, downloads and no ads.",
        "description_zh": "**30 天**音乐会员：无损音质、离线下载、免广告。",
        "usage_notes": "Redeem at the membership centre: **Me → VIP → Redeem code**.",
        "usage_notes_zh": "在会员中心兑换：**我的 → VIP → 兑换码**。",
        "price": Decimal("15.00"),
        "max_per_order": 10,
        "prefix": "VIP",
        "colours": ("#831843", "#ec4899"),
    },
    {
        "slug": "video-vip-1m",
        "category": "memberships",
        "name": "Video VIP 1 month",
        "name_zh": "视频会员 月卡",
        "description": "One month of **Video VIP**: HD and 4K, new episodes first, on phone, PC and TV.",
        "description_zh": "**视频会员**一个月：高清与 4K，抢先看新剧，手机、电脑、电视通用。",
        "usage_notes": "Sign in, open **VIP → Activate a card** and enter the key.",
        "usage_notes_zh": "登录后打开 **VIP → 激活卡密**，输入卡密。",
        "price": Decimal("19.90"),
        "max_per_order": 10,
        "prefix": "VID",
        "colours": ("#4c1d95", "#a855f7"),
    },
    {
        "slug": "gift-card-100",
        "category": "gift-cards",
        "name": "Gift Card ¥100",
        "name_zh": "礼品卡 ¥100",
        "description": "A **¥100** gift card for the online mall. Valid for 3 years.",
        "description_zh": "商城 **¥100** 礼品卡，有效期 3 年。",
        "usage_notes": "At checkout in the mall, choose **Gift card** and enter the key.",
        "usage_notes_zh": "在商城结算时选择**礼品卡**，输入卡密。",
        "price": Decimal("100.00"),
        "max_per_order": 5,
        "prefix": "GFT",
        "colours": ("#713f12", "#eab308"),
    },
    {
        "slug": "coffee-voucher",
        "category": "gift-cards",
        "name": "Coffee voucher (large latte)",
        "name_zh": "咖啡兑换券（大杯拿铁）",
        "description": "One large latte at any partner café.",
        "description_zh": "合作咖啡店通用，兑换大杯拿铁一杯。",
        "usage_notes": "Show the code at the counter.",
        "usage_notes_zh": "在柜台出示兑换码即可。",
        "price": Decimal("28.00"),
        "max_per_order": 5,
        "prefix": "CAF",
        "colours": ("#3f2a1d", "#a16207"),
        "stock": 0,  # sold out: how the shop shows it
    },
    {
        # Reusable keys (循环卡密): every buyer gets the same shared login.
        "slug": "shared-cloud-login",
        "category": "memberships",
        "name": "Shared cloud drive login (1 month)",
        "name_zh": "网盘共享账号（一个月）",
        "description": "A shared **cloud drive** login for one month: everyone who buys gets the same account.\n\n"
                       "Do not change the password; the login is renewed every month.",
        "description_zh": "**网盘**共享账号一个月：每位买家拿到同一个账号。\n\n请勿修改密码；账号每月更新。",
        "usage_notes": "Sign in with the login and password shown, on the web or in the app.",
        "usage_notes_zh": "用显示的账号和密码在网页或 App 登录即可。",
        "price": Decimal("5.00"),
        "max_per_order": 1,
        "kind": ProductKind.REUSABLE,
        "sales_cap": 200,
        "prefix": "CLOUD",
        "colours": ("#0c4a6e", "#38bdf8"),
        "stock": 1,
    },
    {
        # Manual (代充): the buyer answers the shop's questions, staff top the account up by hand.
        "slug": "game-topup-service",
        "category": "game-cards",
        "name": "Game account top-up (done for you)",
        "name_zh": "游戏账号代充",
        "description": "Give us your **game account** and server; our staff top it up with **648 gems** "
                       "within an hour (09:00–23:00).\n\nYou get a confirmation on your order page and by email.",
        "description_zh": "提供您的**游戏账号**和区服，客服在一小时内（09:00–23:00）为您代充 **648 钻石**。\n\n"
                          "完成后订单页面和邮件都会通知您。",
        "usage_notes": "Sign in to the game: the gems are in your mailbox.",
        "usage_notes_zh": "登录游戏，在邮箱中领取钻石。",
        "price": Decimal("618.00"),
        "max_per_order": 1,
        "kind": ProductKind.MANUAL,
        "fulfil_within_minutes": 60,
        "prefix": "",
        "colours": ("#581c87", "#e879f9"),
        "manual_fields": [
            {"key": "account", "label": "Game account ID", "label_zh": "游戏账号 ID", "type": "text",
             "max_length": 40, "help_text": "The number on your profile page.", "help_text_zh": "个人资料页上的数字。",
             "pattern": r"^[0-9]{5,12}$", "pattern_message": "The game account ID is 5 to 12 digits.",
             "pattern_message_zh": "游戏账号 ID 是 5–12 位数字。"},
            {"key": "server", "label": "Server", "label_zh": "区服", "type": "select",
             "choices": "Asia\nEurope\nAmerica"},
        ],
    },
    {
        # Variants: one product, three durations, each with its own price and keys.
        "slug": "ai-chat-plus",
        "category": "memberships",
        "name": "AI Chat Plus membership",
        "name_zh": "AI 对话 Plus 会员",
        "description": "**AI Chat Plus**: faster answers, longer chats and file uploads.\n\n"
                       "Choose how long: 30, 90 or 365 days.",
        "description_zh": "**AI 对话 Plus**：回答更快、对话更长、可上传文件。\n\n可选 30、90 或 365 天。",
        "usage_notes": "Open **Settings → Membership → Redeem** and enter the code.",
        "usage_notes_zh": "打开**设置 → 会员 → 兑换**，输入兑换码。",
        "price": Decimal("29.00"),
        "max_per_order": 5,
        "prefix": "AIC",
        "colours": ("#134e4a", "#14b8a6"),
        "variants": [
            {"slug": "30d", "name": "30 days", "name_zh": "30 天", "price": Decimal("29.00"), "max_per_order": 5},
            {"slug": "90d", "name": "90 days", "name_zh": "90 天", "price": Decimal("79.00"), "max_per_order": 3},
            {"slug": "365d", "name": "365 days", "name_zh": "365 天", "price": Decimal("279.00"),
             "max_per_order": 1, "stock": 3},
        ],
    },
]
# Top each demo product up to this many available keys (unless it says otherwise).
DEMO_STOCK = 25
# The generated pictures: 4:3, as large as a real product photo.
PICTURE_SIZE = (1200, 900)


def demo_picture(*, name: str, colours: tuple[str, str]) -> bytes:
    """A PNG of a diagonal gradient with the name's initials: the same bytes
    for the same name and colours (so a second run stores no new file)."""
    width, height = PICTURE_SIZE
    # Top-left to bottom-right: half a vertical and half a horizontal gradient as the mask.
    down = Image.linear_gradient("L").resize(PICTURE_SIZE, Image.Resampling.BICUBIC)
    across = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(
        PICTURE_SIZE, Image.Resampling.BICUBIC)
    mask = ImageChops.add(down, across, scale=2)
    picture = Image.composite(Image.new("RGB", PICTURE_SIZE, colours[1]), Image.new("RGB", PICTURE_SIZE, colours[0]),
                              mask)
    words = [w for w in name.replace("—", " ").split() if w[:1].isalnum()]
    initials = "".join(w[0] for w in words[:2]).upper()
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=360)
    draw.text((width / 2, height / 2), initials, font=font, fill="white", anchor="mm")
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


class Command(BaseCommand):
    help = "Create the demo shop (categories, products with pictures, keys, notice, contacts) and an admin login " \
           "(safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("--admin-username", default="admin")

    def handle(self, *args, admin_username: str, **options):
        categories = {}
        for spec in DEMO_CATEGORIES:
            spec = dict(spec)
            slug = spec.pop("slug")
            categories[slug], _created = Category.objects.get_or_create(slug=slug, defaults=spec)
        for spec in DEMO_PRODUCTS:
            spec = dict(spec)
            prefix, colours, stock = spec.pop("prefix"), spec.pop("colours"), spec.pop("stock", DEMO_STOCK)
            variants, questions = spec.pop("variants", []), spec.pop("manual_fields", [])
            spec["category"] = categories[spec["category"]]
            with transaction.atomic():
                product, created = Product.objects.get_or_create(slug=spec.pop("slug"), defaults=spec)
                self._fill_blanks(product, spec, colours)
            for position, question in enumerate(questions):
                ManualField.objects.get_or_create(product=product, key=question["key"],
                                                  defaults={**question, "position": position})
            if product.kind == ProductKind.MANUAL:
                self.stdout.write(f"{product.slug}: {'created' if created else 'exists'}, delivered by staff")
            elif not variants:
                self._stock_top_up(product, created=created, prefix=prefix, stock=stock)
            for variant_spec in variants:
                variant_spec = dict(variant_spec)
                variant_stock = variant_spec.pop("stock", DEMO_STOCK)
                slug = f"{product.slug}-{variant_spec.pop('slug')}"
                variant, variant_created = Product.objects.get_or_create(slug=slug, defaults={
                    **variant_spec, "parent": product, "category": product.category, "currency": product.currency})
                self._stock_top_up(variant, created=variant_created, prefix=prefix, stock=variant_stock)
        demo_profile()
        self.stdout.write("notice, contact channels and FAQ: set")
        self._admin(admin_username)

    def _stock_top_up(self, product: Product, *, created: bool, prefix: str, stock: int) -> None:
        missing = stock - keys_available_count(product=product)
        added = 0
        if missing > 0:
            entries = ((n, self._demo_key(prefix)) for n in range(1, missing + 1))
            added = keys_import(product=product, entries=entries, source="manage.py demo").added
        state = "created" if created else "exists"
        available = keys_available_count(product=product)
        self.stdout.write(f"{product.slug}: {state}, {added} keys added, {available} available")

    @staticmethod
    def _fill_blanks(product: Product, spec: dict, colours: tuple[str, str]) -> None:
        """What a demo product made by an older demo lacks (Chinese texts, a
        category, a picture); what is filled in stays as it is."""
        changed = [name for name, value in spec.items() if not getattr(product, name) and value]
        for name in changed:
            setattr(product, name, spec[name])
        if not product.image:
            product_image_apply(product=product, data=demo_picture(name=product.name, colours=colours))
            changed += ["image", "image_width", "image_height", "image_thumb"]
        if changed:
            product.save(update_fields=changed)

    @staticmethod
    def _demo_key(prefix: str) -> str:
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        groups = ("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))
        return f"{prefix}-" + "-".join(groups)

    def _admin(self, username: str) -> None:
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(
                f"admin login: user {username!r} exists (set a new password with "
                f"`manage.py changepassword {username}`)"
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(self.style.SUCCESS(
            f"admin login created: user {username!r}, password {password} (shown once; "
            f"change it with `manage.py changepassword {username}`)"
        ))
