"""Admin for the catalogue and orders, one module per family of pages.

Orders change only through services (checkout, callback, delivery), so their
admin pages are read-only; the order page gathers its lines, timeline,
deliveries and payments as read-only inlines. Importing the modules registers
their ModelAdmins (Django's autodiscovery imports ``shop.admin``).
"""

from shop.admin import buyers, catalogue, keys, manual, orders, settings  # noqa: F401
