"""Two-factor sign-in for staff (issue 19, point 6): TOTP plus one-time recovery codes.

Built on django-otp (``otp_totp`` for the authenticator app, ``otp_static`` for
the recovery codes). The password step is still the admin's own login view,
throttled by django-axes (shop/adminlogin.py); afterwards the session is
signed in but not *verified*, and ``AdminTwoFactorMiddleware`` keeps every
page under the admin's prefix (custom views, /admin/django-rq/,
/admin/dashboard/) out of reach until a code is given. It works by path, so
whichever ``AdminSite`` serves /admin/ is covered.

Who is asked: superusers whenever ``ADMIN_REQUIRE_2FA`` is on (the default
with DEBUG off; a superuser with no authenticator is taken to enrolment), and
any staff member who enrolled. Wrong codes count as axes failures for the
username and address, next to wrong passwords (same limit, cool-off, alerts
and unlock commands), and each device also backs off exponentially on its own.
"""
