"""Admin for card key stock, one module per family of pages.

The plaintext of a key never appears in a list, a key's page or a log (only
the masked form). Owner actions — import, void (with a reason), return to
stock, replace on an order, reveal, export — each need their own permission
(``inventory.<action>_cardkey``) and write a KeyAuditEvent (who, when, from
which IP, what; never the key). Importing the modules registers their
ModelAdmins (Django's autodiscovery imports ``inventory.admin``).
"""

from inventory.admin import audit, keys, merchant_api, policies, stock  # noqa: F401
