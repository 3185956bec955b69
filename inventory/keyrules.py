"""Per-product key rules (防呆): how a key is normalised for its fingerprint,
and the format it must have.

The key *delivered* is always exactly what the owner imported, trimmed; the
normalised form only decides what counts as the same key (so ``abcd-efgh``
and ``ABCD EFGH`` are one key when the product says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

_CONFUSABLES = str.maketrans({"O": "0", "o": "0", "I": "1", "i": "1", "L": "1", "l": "1"})


@dataclass(frozen=True)
class KeyRules:
    collapse_spaces: bool = True
    casefold: bool = False
    strip_separators: str = ""
    fold_confusables: bool = False
    format_regex: str = ""

    def normalise(self, key: str) -> str:
        """The form fingerprints are computed from (``key`` already trimmed)."""
        if self.collapse_spaces:
            key = " ".join(key.split())
        if self.strip_separators:
            key = key.translate({ord(c): None for c in self.strip_separators})
        if self.casefold:
            key = key.upper()
        if self.fold_confusables:
            key = key.translate(_CONFUSABLES)
        return key

    def format_problem(self, key: str) -> str | None:
        """Why ``key`` does not have the product's format, or None if it does.

        Points at the first character that cannot start a valid key
        ("character 6 is not allowed"), or says what is missing at the end.
        """
        found = self.format_problem_at(key)
        return None if found is None else found[1]

    def format_problem_at(self, key: str) -> tuple[int | None, str] | None:
        """``format_problem`` with the 1-based position it points at (None
        when the key is only too short), or None if the key has the format."""
        if not self.format_regex:
            return None
        pattern = _compiled(self.format_regex)
        if pattern.fullmatch(key):
            return None
        for position in range(1, len(key) + 1):
            if not pattern.fullmatch(key[:position], partial=True):
                return position, f"character {position} ({key[position - 1]!r}) is not allowed there"
        return None, f"too short: {len(key)} characters, the format needs more"


_cache: dict[str, regex.Pattern] = {}


def _compiled(pattern: str) -> regex.Pattern:
    compiled = _cache.get(pattern)
    if compiled is None:
        compiled = _cache[pattern] = regex.compile(pattern)
    return compiled


def format_regex_check(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used as a format, or None."""
    try:
        regex.compile(pattern)
    except regex.error as exc:
        return f"not a valid regular expression: {exc}"
    return None
