"""Writing card key stock, by topic; import them from here."""

from inventory.services.claim import (  # noqa: F401
    ClaimOutcome,
    ClaimRequest,
    KeysUnavailable,
    LineClaim,
    keys_claim,
    keys_mark_delivered,
    keys_release,
    keys_reserve,
    line_claim,
)
from inventory.services.history import keys_deliver_history  # noqa: F401
from inventory.services.holds import keys_hold, keys_holds_release, keys_unhold  # noqa: F401
from inventory.services.imports import (  # noqa: F401
    IMPORT_CHUNK,
    REPORT_ISSUES_MAX,
    ImportIssue,
    ImportReport,
    import_batch_drop_if_empty,
    import_batch_void,
    key_entries,
    keys_import,
    stock_added_announce,
)
from inventory.services.manual import key_manual_history, key_manual_hold  # noqa: F401
from inventory.services.owner import (  # noqa: F401
    KeyStateError,
    key_void_delivered,
    keys_audit,
    keys_rotate,
    keys_unvoid,
    keys_void,
)
from inventory.services.stock import (  # noqa: F401
    key_policy_get,
    keys_available_at_least,
    low_stock_crossed,
    low_stock_rearm,
)
