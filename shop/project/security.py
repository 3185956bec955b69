"""The Content-Security-Policy (django-csp) of every page but the admin's."""

# Content-Security-Policy (django-csp): buyer pages load scripts, styles and
# images from this site only and run no inline script, so injected markup
# cannot run. Forms may go to the payment gateways (a POST answered by a
# redirect to the gateway), so form-action is left open. The admin (Django's
# own, django-rq's dashboard) uses inline styles: it is excluded, and stays
# behind X-Frame-Options and its login.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
