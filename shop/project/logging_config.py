"""The LOGGING dict: one console handler, plain or JSON lines, with the request context and secrets redacted."""


def logging_config(*, log_format: str, level: str) -> dict:
    """Django's ``LOGGING``: lines in ``log_format`` (plain or json), the root logger at ``level``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(order_no)s] %(message)s"},
            "json": {"()": "shop.project.observability.JsonFormatter"},
        },
        "filters": {
            "context": {"()": "shop.project.observability.ContextFilter"},
            "redact": {"()": "shop.project.observability.RedactFilter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler", "formatter": log_format, "filters": ["context", "redact"],
            },
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "rq.worker": {"level": "INFO"},
            "pgserver": {"level": "WARNING"},
        },
    }
