import sys
import uuid


class ConsoleSmsBackend:
    """Development: print the text where the worker logs (like the console email backend)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def send(self, *, to: str, text: str, idempotency_key: str) -> str:
        message_id = f"console-{uuid.uuid4().hex[:12]}"
        self.stream.write(f"SMS to {to} ({message_id}, {idempotency_key}):\n{text}\n{'-' * 40}\n")
        self.stream.flush()
        return message_id
