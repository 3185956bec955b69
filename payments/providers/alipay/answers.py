"""Alipay's answers: the exact raw ``<method>_response`` text it signed, and the answer as the plug-in reads it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime


def alipay_response_raw(text: str, name: str) -> str | None:
    """The exact raw JSON text of the top-level member ``name`` of the answer
    ``text`` (what Alipay signed), or None when it is absent, not an object,
    or present twice. Walks the top-level object with the JSON decoder, so a
    string value that merely contains ``name`` is never mistaken for it."""
    decoder = json.JSONDecoder()
    found = None

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    try:
        i = skip(0)
        if text[i:i + 1] != "{":
            return None
        i = skip(i + 1)
        if text[i:i + 1] == "}":
            return None
        while True:
            key, i = decoder.raw_decode(text, i)
            i = skip(i)
            if not isinstance(key, str) or text[i:i + 1] != ":":
                return None
            start = skip(i + 1)
            value, end = decoder.raw_decode(text, start)
            if key == name:
                if found is not None or not isinstance(value, dict):
                    return None
                found = text[start:end]
            i = skip(end)
            if text[i:i + 1] == "}":
                break
            if text[i:i + 1] != ",":
                return None
            i = skip(i + 1)
    except (ValueError, IndexError):
        return None
    return found if not text[i + 1:].strip() else None


@dataclass(frozen=True)
class AlipayAnswer:
    """A gateway answer: its ``<method>_response`` object and whether its sign verified."""

    data: dict
    sign_state: str  # VALID, INVALID, MISSING
    server_time: datetime | None

    @property
    def code(self) -> str:
        return str(self.data.get("code", ""))

    @property
    def sub_code(self) -> str:
        return str(self.data.get("sub_code", ""))

    @property
    def error(self) -> str:
        """The refusal's name (sub_code, else code) as a short plain code, fit for logs and exceptions."""
        name = self.sub_code or self.code or "BAD_ANSWER"
        return "".join(c for c in name if c.isascii() and (c.isalnum() or c in "._-"))[:64] or "BAD_ANSWER"

    @property
    def verified(self) -> bool:
        return self.sign_state == "VALID"

    def field(self, name: str) -> str:
        value = self.data.get(name, "")
        return value if isinstance(value, str) else str(value)
