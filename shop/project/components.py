"""Django's installed apps and middleware, in order (static: nothing here reads the environment)."""

INSTALLED_APPS = [
    "shop.adminsite.ShopAdminConfig",  # django.contrib.admin with the shop's AdminSite
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "axes",
    "django_otp",  # two-factor sign-in for staff (shop/twofactor/)
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
    "shop",
    "inventory",
    "payments",
    "delivery",
    "riskctl",
    "exports",  # admin exports of orders and keys (CSV, XLSX), and their audit
]

MIDDLEWARE = [
    "shop.project.observability.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # shop.project.browser_middleware: Django's session, locale, auth and messages
    # middleware, stepped around for SERVER_TO_SERVER_PATHS.
    "shop.project.browser_middleware.SessionMiddleware",
    # Buyer pages in the language the buyer chose (set_language) or the browser asks for.
    "shop.project.browser_middleware.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "shop.project.browser_middleware.AuthenticationMiddleware",
    # Two-factor sign-in: request.user.is_verified(), then no admin page until a code is given.
    "django_otp.middleware.OTPMiddleware",
    "shop.twofactor.middleware.AdminTwoFactorMiddleware",
    "shop.project.browser_middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Admin login throttling (shop/adminlogin.py): the per-address limit, then
    # django-axes, which must stay the last middleware (its docs).
    "shop.adminlogin.AdminLoginIpThrottleMiddleware",
    "axes.middleware.AxesMiddleware",
]
# Server-to-server callbacks (regexes matched against the whole path): the
# payment providers' notifies. No session, language, user or messages are
# set up for them; every other middleware runs.
SERVER_TO_SERVER_PATHS = [r"/payments/[-a-zA-Z0-9_]+/notify", r"/payments/stripe/webhook"]
