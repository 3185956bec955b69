"""Kamidrop settings, configured by environment variables (static blocks and the payment
gateways' credentials are imported from sibling modules in shop/project/).

Development works out of the box: with ``DEBUG`` on (the default outside the
production image) secrets are generated once into ``.data/`` and the embedded
PostgreSQL and Redis are started when ``DATABASE_URL`` / ``REDIS_URL`` are
unset. With ``DEBUG`` off the settings refuse to start without real secrets.
"""

import base64
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from shop.project import embedded

# Installed apps and middleware (shop/project/components.py) and the Content-Security-Policy
# (shop/project/security.py) are static: they read no environment.
from shop.project.components import INSTALLED_APPS, MIDDLEWARE, SERVER_TO_SERVER_PATHS  # noqa: F401
from shop.project.database_config import database_settings
from shop.project.envconfig import email_from_url, env_bool, env_int, env_list, env_str
from shop.project.logging_config import logging_config
from shop.project.redis_config import redis_settings
from shop.project.security import CONTENT_SECURITY_POLICY  # noqa: F401

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = embedded.data_dir()

DEBUG = env_bool("DEBUG", True)


def _secret(name: str, *, generate) -> str:
    """The env var ``name``; in development a value generated once into .data/."""
    value = env_str(name)
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured(f"{name} must be set when DEBUG is off")
    path = DATA_DIR / "secrets" / name.lower()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(generate())
    return path.read_text().strip()


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


SECRET_KEY = _secret("SECRET_KEY", generate=lambda: secrets.token_urlsafe(50))
# Comma-separated Fernet keys: the first encrypts, all decrypt (rotation).
KEY_ENCRYPTION_KEYS = [k.strip() for k in _secret("KEY_ENCRYPTION_KEYS", generate=_fernet_key).split(",") if k.strip()]
# Pepper for key fingerprints (HMAC-SHA256): separate from the encryption keys
# so that rotating those does not change any fingerprint.
KEY_FINGERPRINT_PEPPER = _secret("KEY_FINGERPRINT_PEPPER", generate=lambda: secrets.token_urlsafe(32))

PORT = env_int("PORT", 8000)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off")
SITE_URL = env_str("SITE_URL", f"http://127.0.0.1:{PORT}" if DEBUG else "").rstrip("/")
if not SITE_URL:
    raise ImproperlyConfigured("SITE_URL must be set when DEBUG is off (links in emails, payment return URLs)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [SITE_URL])

ROOT_URLCONF = "shop.project.urls"
WSGI_APPLICATION = "shop.project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # The shop's notice and contact channels, on every buyer page (cached).
                "shop.context_processors.shop_frame",
            ],
        },
    },
]

# --- data stores ------------------------------------------------------------


def _service_url(name: str, ensure) -> str:
    """The env var ``name``, or in development the embedded server's URL."""
    value = env_str(name)
    if value:
        return value
    if not DEBUG:
        raise ImproperlyConfigured(f"{name} must be set when DEBUG is off (the embedded servers are for development)")
    return ensure(root=DATA_DIR)


DATABASE_URL = _service_url("DATABASE_URL", embedded.postgres_ensure)
# DB_CONN_MAX_AGE, DB_CONNECT_TIMEOUT, DB_POOLER (PgBouncer's transaction mode): shop/project/database_config.py.
DATABASES = {"default": database_settings(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis (queues, the cache's counters, the breakers' timeouts): one server at REDIS_URL,
# or the master Redis Sentinel names (REDIS_SENTINELS); shop/project/redis_config.py.
globals().update(redis_settings(service_url=lambda: _service_url("REDIS_URL", embedded.redis_ensure)))

# --- auth, i18n, static -------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Admin login throttling (django-axes; shop/adminlogin.py). axes checks first
# and refuses a locked-out login before any password is compared.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Lock the pair (username, address), not the username: someone guessing from
# elsewhere cannot lock the owner out. Failures are rows in PostgreSQL.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# axes' database handler, but a password alone does not forget failures while a code is owed.
AXES_HANDLER = "shop.adminlogin.AdminLoginAxesHandler"
# Wrong passwords for one username from one address before that pair is locked.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
# Hours, as axes reads a float: the lock lifts this long after the last failure.
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15) / 60
# A successful login forgets that username's earlier typos from that address.
AXES_RESET_ON_SUCCESS = True
# The address risk rules and rate limits see (X-Forwarded-For only from TRUSTED_PROXIES).
AXES_CLIENT_IP_CALLABLE = "shop.adminlogin.admin_login_client_ip"
# Failed logins from one address, any usernames, within the cool-off before its logins are refused.
ADMIN_LOGIN_IP_FAILURE_LIMIT = env_int("ADMIN_LOGIN_IP_FAILURE_LIMIT", 20)
# Two-factor sign-in (shop/twofactor/, django-otp): superusers must give a code
# from an authenticator app (or a recovery code) after the password; staff who
# enrolled are always asked. Off by default only with DEBUG on (the demo login).
ADMIN_REQUIRE_2FA = env_bool("ADMIN_REQUIRE_2FA", not DEBUG)
# Wrong codes are axes failures too: keep the typed code out of its rows.
AXES_SENSITIVE_PARAMETERS = ["code"]
# The device pages in the admin do not show TOTP secrets or recovery codes.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Uploaded images (product pictures): written by the admin, served by
# shop.media under content-hashed names with a year's cache. docker-compose.yml
# keeps the folder on a volume.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / ".data" / "media")))
MEDIA_URL = "/media/"

# In development WhiteNoise serves straight from the app folders (no collectstatic).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
# Redirect plain HTTP to HTTPS when a TLS proxy fronts the site; monitors may
# still reach /healthz over plain HTTP.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", BEHIND_TLS_PROXY)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# On (a year) when a TLS proxy fronts the site, so browsers never try plain
# HTTP again; off otherwise (a wrong HSTS header is hard to take back).
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if BEHIND_TLS_PROXY else 0)
# Only when every subdomain is HTTPS too (and, for preload, the domain is to be
# submitted to the browsers' preload list).
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)


# --- email ------------------------------------------------------------------

EMAIL_URL = env_str("EMAIL_URL", "console://" if DEBUG else "")
if not EMAIL_URL:
    raise ImproperlyConfigured("EMAIL_URL must be set when DEBUG is off: smtp://user:password@host:587?tls=1 "
                               "(keys are sent by email)")
# Console email prints every key into the log and emails nobody: never a
# production default, only on purpose (a demo without a mail server).
EMAIL_CONSOLE_ALLOWED = env_bool("EMAIL_CONSOLE_ALLOWED", DEBUG)
if EMAIL_URL.partition(":")[0] in ("console", "locmem") and not EMAIL_CONSOLE_ALLOWED:
    raise ImproperlyConfigured("EMAIL_URL is console:// with DEBUG off: every key would be printed in the log and "
                               "no buyer emailed. Set an smtp:// URL, or EMAIL_CONSOLE_ALLOWED=1 for a demo.")
globals().update(email_from_url(EMAIL_URL))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Kamidrop <no-reply@kamidrop.local>")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20)

# --- shop -------------------------------------------------------------------

SHOP_NAME = env_str("SHOP_NAME", "Kamidrop")
OTP_TOTP_ISSUER = SHOP_NAME  # the name an authenticator app lists the admin account under
SHOP_CURRENCY = env_str("SHOP_CURRENCY", "CNY")
ORDER_HOLD_MINUTES = env_int("ORDER_HOLD_MINUTES", 15)  # a checkout holds its keys this long for the buyer to pay
# Live unpaid orders one buyer (a mailbox, aliases folded, or a device) may
# hold: of one product, and in all; and one address of one product (a carrier
# NAT hides many buyers behind one; 0: no such ceiling). Nobody hoards stock.
UNPAID_ORDERS_PER_PRODUCT = env_int("UNPAID_ORDERS_PER_PRODUCT", 3)
UNPAID_ORDERS_MAX = env_int("UNPAID_ORDERS_MAX", 5)
UNPAID_ORDERS_PER_ADDRESS = env_int("UNPAID_ORDERS_PER_ADDRESS", 50)

# --- inventory ------------------------------------------------------------------

# Bench only: 0 makes the key claim a plain FOR UPDATE (bench/flash_sale.py --claim both).
INVENTORY_CLAIM_SKIP_LOCKED = env_bool("BENCH_CLAIM_SKIP_LOCKED", True)

# --- key API ---

# Merchant key verification / redemption API (django-ratelimit rates).
KEY_API_RATE_PER_KEY = env_str("KEY_API_RATE_PER_KEY", "600/m")
KEY_API_RATE_PER_IP = env_str("KEY_API_RATE_PER_IP", "300/m")
# The public "check my key" page, per client IP.
KEY_CHECK_RATE_PER_IP = env_str("KEY_CHECK_RATE_PER_IP", "10/m")
# Cooldown after repeated NOT_FOUND from one source (API key or IP): "misses:seconds" steps;
# past the last step each doubling of the misses doubles the cooldown (capped at a day).
KEY_API_COOLDOWN_STEPS = [
    tuple(int(n) for n in step.split(":")) for step in env_list("KEY_API_COOLDOWN_STEPS", ["10:60", "20:600"])
]
# Misses are counted over this many seconds since the first one.
KEY_API_MISS_WINDOW_SECONDS = env_int("KEY_API_MISS_WINDOW_SECONDS", 86400)
# NOT_FOUND answers to well-formed keys from one source within an hour that alert the owner.
KEY_API_GUESS_ALERT_MISSES = env_int("KEY_API_GUESS_ALERT_MISSES", 30)
# NOT_FOUND answers per API key and per client address (whatever end_user the merchant sends)
# within KEY_API_MISS_BUDGET_SECONDS; the next calls are cooled down that long and the owner
# alerted. 0 turns a budget off. A merchant calling from one server spends both.
KEY_API_MISS_BUDGET_PER_KEY = env_int("KEY_API_MISS_BUDGET_PER_KEY", 50)
KEY_API_MISS_BUDGET_PER_IP = env_int("KEY_API_MISS_BUDGET_PER_IP", 20)
KEY_API_MISS_BUDGET_SECONDS = env_int("KEY_API_MISS_BUDGET_SECONDS", 600)

# --- risk control -------------------------------------------------------------

# Proxies whose X-Forwarded-For is believed (IPs or CIDR ranges, comma-separated).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
# django-ratelimit keys on the same client IP the risk rules see.
RATELIMIT_IP_META_KEY = "riskctl.identity.ratelimit_ip"
# A limit whose counter cannot be read (Redis down) lets the request through; see shop/project/counter_cache.py.
RATELIMIT_FAIL_OPEN = True
# Seconds a process may keep using the risk rules, thresholds and purchase limits it read
# (edits in the admin take effect within this long).
RISK_CONFIG_CACHE_SECONDS = env_int("RISK_CONFIG_CACHE_SECONDS", 5)
# What the buyer is told while an order is being checked.
REVIEW_EXPECTED_WAIT = env_str("REVIEW_EXPECTED_WAIT", "usually within 2 hours")

# --- payments -----------------------------------------------------------------

# The gateways' credentials (EPay, Alipay, WeChat Pay, epusdt, Stripe) and PAYMENT_PROVIDERS:
# shop/project/gateways.py, read at this point as before.
from shop.project.gateways import *  # noqa: E402,F403

# Payment methods (admin rows and the environment's) are read once per process
# and kept this long; the notify endpoint looks its method up on every call.
PAYMENT_METHODS_CACHE_SECONDS = env_int("PAYMENT_METHODS_CACHE_SECONDS", 10)
# Stored notices applied per transaction by the applier (payments queue).
PAYMENTS_APPLY_BATCH = env_int("PAYMENTS_APPLY_BATCH", 100)
# An applier job stops taking batches after this long and leaves the rest to a
# successor, so that the worker sends the emails of the orders just paid
# (workers listen on the delivery queue first) before it pays more.
PAYMENTS_APPLY_BUDGET_MS = env_int("PAYMENTS_APPLY_BUDGET_MS", 1000)
# A notice that fails to apply this many times alerts the owner (it keeps being retried).
PAYMENTS_APPLY_ALERT_AFTER = env_int("PAYMENTS_APPLY_ALERT_AFTER", 3)
# The sweeper applies stored notices older than this (their wake-up was lost).
PAYMENTS_APPLY_OVERDUE_SECONDS = env_int("PAYMENTS_APPLY_OVERDUE_SECONDS", 30)
SANDBOX_ENABLED = env_bool("SANDBOX_ENABLED", DEBUG)
SANDBOX_SECRET = _secret("SANDBOX_SECRET", generate=lambda: secrets.token_urlsafe(32)) if SANDBOX_ENABLED else ""
# Where the sandbox gateway posts its server-to-server notify.
SANDBOX_NOTIFY_URL = env_str("SANDBOX_NOTIFY_URL", f"{SITE_URL}/payments/sandbox/notify")
# How the sandbox gateway notifies by default: normal, duplicate, out_of_order, wrong_amount, overpay, lost.
SANDBOX_NOTIFY_MODE = env_str("SANDBOX_NOTIFY_MODE", "normal")


# --- delivery ---------------------------------------------------------------

DELIVERY_CHANNELS = {
    "INBOX": "delivery.channels.inbox.InboxChannel",
    "EMAIL": "delivery.channels.email.EmailChannel",
    "SMS": "delivery.channels.sms.SmsChannel",
}
# The SMS gateway (dotted path): delivery.sms.console.ConsoleSmsBackend (prints),
# delivery.sms.twilio_backend.TwilioSmsBackend, delivery.sms.webhook.WebhookSmsBackend.
SMS_BACKEND = env_str("SMS_BACKEND", "delivery.sms.console.ConsoleSmsBackend")
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN")
TWILIO_FROM = env_str("TWILIO_FROM")
SMS_WEBHOOK_URL = env_str("SMS_WEBHOOK_URL")
SMS_WEBHOOK_SECRET = env_str("SMS_WEBHOOK_SECRET")
# Seconds between attempts after a failure (about three days in all).
DELIVERY_RETRY_SCHEDULE = [
    int(s) for s in env_list("DELIVERY_RETRY_SCHEDULE", ["10", "30", "120", "600", "1800", "3600",
                                                        "10800", "21600", "43200", "86400", "86400"])
]
# Seconds a worker's claim on a delivery it is sending holds: longer than the
# job timeout, so a live send is never taken over; a SIGKILLed sender's claim
# lapses after it and the delivery is sent again (at most one duplicate).
DELIVERY_SEND_LEASE_SECONDS = env_int("DELIVERY_SEND_LEASE_SECONDS", 90)
# First sends go out in batch jobs of at most this many deliveries (one SMTP
# connection, one claim, one recording transaction per batch).
DELIVERY_BATCH_SIZE = env_int("DELIVERY_BATCH_SIZE", 100)
# The worker class of `manage.py rqworker`: it registers the periodic sweep.
RQ = {"WORKER_CLASS": "delivery.worker.SweepingWorker"}
# Seconds between sweeps (re-enqueue lost deliveries, expire unpaid orders,
# fill orders waiting for stock, alert on stuck orders).
SWEEP_INTERVAL_SECONDS = env_int("SWEEP_INTERVAL_SECONDS", 60)
# Seconds the sweeper's lease (which sweeper leads) lasts past each renewal; a
# dead leader is replaced within it. `sweep --every N` uses at least 3 × N.
SWEEP_LEASE_SECONDS = env_int("SWEEP_LEASE_SECONDS", 60)
# A PENDING delivery older than this with no live job is re-enqueued.
SWEEP_ORPHAN_AFTER_SECONDS = env_int("SWEEP_ORPHAN_AFTER_SECONDS", 120)
# Paid orders not delivered after this many minutes alert the owner.
SWEEP_STUCK_MINUTES = env_int("SWEEP_STUCK_MINUTES", 30)
# How often a buyer may ask for a resend (django-ratelimit rates: per order, per IP address).
RESEND_RATE_PER_ORDER = env_str("RESEND_RATE_PER_ORDER", "3/h")
RESEND_RATE_PER_IP = env_str("RESEND_RATE_PER_IP", "10/h")
# Checkouts (web form and API together; django-ratelimit rates, "" or "0" turns one off):
# per buyer (client IP + device id + normalised email), and a ceiling per client IP
# generous enough for hundreds of buyers behind one carrier NAT in a flash sale.
CHECKOUT_RATE_PER_BUYER = env_str("CHECKOUT_RATE_PER_BUYER", "20/m")
CHECKOUT_RATE_PER_IP = env_str("CHECKOUT_RATE_PER_IP", "600/m")

# --- owner alerts -------------------------------------------------------------

# Who hears about low stock, dead letters, odd payments (comma-separated emails).
OWNER_ALERT_EMAILS = env_list("OWNER_ALERT_EMAILS", [])
# Raising the same incident again within this many seconds is counted, not re-sent.
OWNER_ALERT_DEDUPE_SECONDS = env_int("OWNER_ALERT_DEDUPE_SECONDS", 3600)

# --- exports from the admin: shop/project/exports_config.py ------------------
from shop.project.exports_config import *  # noqa: E402,F403

# --- observability ------------------------------------------------------------

# /metrics answers a request with "Authorization: Bearer <METRICS_TOKEN>" or
# from one of METRICS_ALLOWED_IPS (IPs or CIDR ranges); with neither set, nobody.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", [])
# Merchant webhooks (endpoints are set in the admin): seconds between attempts, request timeout.
WEBHOOK_RETRY_SCHEDULE = [int(s) for s in env_list("WEBHOOK_RETRY_SCHEDULE", ["10", "60", "300", "1800", "7200", "21600"])]
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
# Owner alerts besides email: a signed generic webhook and a Telegram bot (each off until set).
OWNER_ALERT_WEBHOOK_URL = env_str("OWNER_ALERT_WEBHOOK_URL", "")
OWNER_ALERT_WEBHOOK_SECRET = env_str("OWNER_ALERT_WEBHOOK_SECRET", "")
if OWNER_ALERT_WEBHOOK_URL and not OWNER_ALERT_WEBHOOK_SECRET:
    raise ImproperlyConfigured("OWNER_ALERT_WEBHOOK_SECRET must be set when OWNER_ALERT_WEBHOOK_URL is")
TELEGRAM_BOT_TOKEN = env_str("TELEGRAM_BOT_TOKEN", "")
TELEGRAM_CHAT_ID = env_str("TELEGRAM_CHAT_ID", "")
# Base URL of the Telegram Bot API (tests point it at a local fake).
TELEGRAM_API_BASE = "https://api.telegram.org"
# At most this many alerts of one kind are sent per hour; the rest stay in the admin.
OWNER_ALERT_RATE_PER_HOUR = env_int("OWNER_ALERT_RATE_PER_HOUR", 10)

# json: one JSON object per line (time, level, logger, message, request_id,
# order_no); plain: one readable line. Secrets are redacted either way.
LOG_FORMAT = env_str("LOG_FORMAT", "plain" if DEBUG else "json")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env_str("LOG_LEVEL", "INFO"))
