"""Payment providers by dotted path, and each gateway's credentials from the environment, checked together."""

from decimal import Decimal

from django.core.exceptions import ImproperlyConfigured

from shop.project.envconfig import env_bool, env_int, env_str

# Provider id → dotted path. A provider whose settings are missing reports
# itself disabled: it is neither offered at checkout nor answers its notify.
PAYMENT_PROVIDERS = {
    "sandbox": "payments.providers.sandbox.SandboxProvider",
    "epay": "payments.providers.epay.EpayProvider",
    "stripe": "payments.providers.stripe.StripeProvider",
    "alipay": "payments.providers.alipay.AlipayProvider",
    "wechat": "payments.providers.wechat.WechatPayProvider",
    "epusdt": "payments.providers.epusdt.EpusdtProvider",
}

# 易支付 (EPay v1): merchant id, merchant key (MD5 signs), the gateway's submit.php URL.
EPAY_PID = env_str("EPAY_PID", "")
EPAY_KEY = env_str("EPAY_KEY", "")
EPAY_GATEWAY = env_str("EPAY_GATEWAY", "")
# Payment type sent to submit.php (alipay, wxpay, qqpay); empty lets the gateway's cashier ask.
EPAY_TYPE = env_str("EPAY_TYPE", "")
if EPAY_PID and not (EPAY_KEY and EPAY_GATEWAY):
    # An empty key would make every notify forgeable.
    raise ImproperlyConfigured("EPAY_KEY and EPAY_GATEWAY must be set when EPAY_PID is")
# Query before credit: before a signed notice pays an order, ask the gateway's
# api.php whether the trade is paid with that amount (an MD5 key leaks easily).
EPAY_QUERY_BEFORE_CREDIT = env_bool("EPAY_QUERY_BEFORE_CREDIT", True)

# Alipay open platform: app id, the app's RSA2 private key and Alipay's public
# key (PEM, or the bare base64 the Alipay console shows), the channel (f2f: 当面付
# QR; page: 电脑网站支付; wap: 手机网站支付) and the gateway.
ALIPAY_APP_ID = env_str("ALIPAY_APP_ID", "")
ALIPAY_PRIVATE_KEY = env_str("ALIPAY_PRIVATE_KEY", "")
ALIPAY_PUBLIC_KEY = env_str("ALIPAY_PUBLIC_KEY", "")
ALIPAY_CHANNEL = env_str("ALIPAY_CHANNEL", "f2f")
ALIPAY_GATEWAY = env_str("ALIPAY_GATEWAY", "https://openapi.alipay.com/gateway.do")
ALIPAY_QUERY_BEFORE_CREDIT = env_bool("ALIPAY_QUERY_BEFORE_CREDIT", False)
if ALIPAY_APP_ID and not (ALIPAY_PRIVATE_KEY and ALIPAY_PUBLIC_KEY):
    raise ImproperlyConfigured("ALIPAY_PRIVATE_KEY and ALIPAY_PUBLIC_KEY must be set when ALIPAY_APP_ID is")

# WeChat Pay API v3 (Native QR): merchant id, app id, the merchant key and its
# certificate serial, the APIv3 key (32 characters), the platform public key
# (or certificate) and its id.
WECHATPAY_MCHID = env_str("WECHATPAY_MCHID", "")
WECHATPAY_APPID = env_str("WECHATPAY_APPID", "")
WECHATPAY_SERIAL = env_str("WECHATPAY_SERIAL", "")
WECHATPAY_PRIVATE_KEY = env_str("WECHATPAY_PRIVATE_KEY", "")
WECHATPAY_APIV3_KEY = env_str("WECHATPAY_APIV3_KEY", "")
WECHATPAY_PLATFORM_PUBLIC_KEY = env_str("WECHATPAY_PLATFORM_PUBLIC_KEY", "")
WECHATPAY_PLATFORM_KEY_ID = env_str("WECHATPAY_PLATFORM_KEY_ID", "")
WECHATPAY_GATEWAY = env_str("WECHATPAY_GATEWAY", "https://api.mch.weixin.qq.com")
WECHATPAY_QUERY_BEFORE_CREDIT = env_bool("WECHATPAY_QUERY_BEFORE_CREDIT", False)
if WECHATPAY_MCHID and not all((WECHATPAY_APPID, WECHATPAY_SERIAL, WECHATPAY_PRIVATE_KEY, WECHATPAY_APIV3_KEY,
                                WECHATPAY_PLATFORM_PUBLIC_KEY)):
    raise ImproperlyConfigured("WECHATPAY_APPID, _SERIAL, _PRIVATE_KEY, _APIV3_KEY and _PLATFORM_PUBLIC_KEY must be "
                               "set when WECHATPAY_MCHID is")

# USDT-TRC20 through an epusdt-compatible gateway: its base URL, the API token
# (MD5 signs) and, optionally, the shop's own rate (shop currency per USDT).
EPUSDT_GATEWAY = env_str("EPUSDT_GATEWAY", "")
EPUSDT_TOKEN = env_str("EPUSDT_TOKEN", "")
try:
    EPUSDT_RATE = Decimal(env_str("EPUSDT_RATE", "") or "0") or None
except ArithmeticError:
    raise ImproperlyConfigured("EPUSDT_RATE must be a number: the shop's currency per USDT, e.g. 7.10") from None
if EPUSDT_RATE is not None and EPUSDT_RATE <= 0:
    raise ImproperlyConfigured("EPUSDT_RATE must be positive: the shop's currency per USDT, e.g. 7.10")
EPUSDT_QUERY_BEFORE_CREDIT = env_bool("EPUSDT_QUERY_BEFORE_CREDIT", True)
if EPUSDT_GATEWAY and not EPUSDT_TOKEN:
    raise ImproperlyConfigured("EPUSDT_TOKEN must be set when EPUSDT_GATEWAY is")

# Stripe: the secret API key and the webhook endpoint's signing secret (whsec_...).
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "")
if STRIPE_SECRET_KEY and not STRIPE_WEBHOOK_SECRET:
    raise ImproperlyConfigured("STRIPE_WEBHOOK_SECRET must be set when STRIPE_SECRET_KEY is")
# Seconds a webhook's signed timestamp may lag (replay window).
STRIPE_WEBHOOK_TOLERANCE = env_int("STRIPE_WEBHOOK_TOLERANCE", 300)
# Base URL of the Stripe API; None is Stripe itself (tests point it at a local fake).
STRIPE_API_BASE = None
