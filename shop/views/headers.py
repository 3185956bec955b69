"""Header values several buyer pages answer with: Retry-After, and the order pages' Referrer-Policy."""

RETRY_AFTER_SECONDS = 60
ORDER_REFERRER_POLICY = "same-origin"
