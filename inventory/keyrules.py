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
        when the key is only too short), or None if the key has the format.

        The format applies to the key as compared (``normalise``): with case
        and ``-`` folded, ``vpn-aaaa`` has the format ``VPN[A-Z]{4}``. A key
        whose form as typed matches also has it (a format written with the
        separators the policy ignores). Positions count in the key as typed.
        """
        if not self.format_regex:
            return None
        pattern = _compiled(self.format_regex)
        folded = self.normalise(key)
        if pattern.fullmatch(folded) or pattern.fullmatch(key):
            return None
        problems = [_problem_at(pattern, key)]
        if folded != key:
            position, message = _problem_at(pattern, folded)
            problems.append((None if position is None else self._typed_position(key, position), message))
        # The form the key follows longest gives the hint ("too short" is the longest).
        position, message = max(problems, key=lambda p: p[0] if p[0] is not None else len(key) + 1)
        if position is not None:
            message = f"character {position} ({key[position - 1]!r}) is not allowed there"
        return position, message

    def _typed_position(self, key: str, position: int) -> int:
        """The 1-based position in ``key`` of the ``position``-th character of its normalised form."""
        for end in range(1, len(key) + 1):
            if len(self.normalise(key[:end])) >= position:
                return end
        return len(key)


def _problem_at(pattern: regex.Pattern, form: str) -> tuple[int | None, str]:
    """The first position of ``form`` no key of the format can have there, or
    (None, why the whole of it is too short)."""
    for position in range(1, len(form) + 1):
        if not pattern.fullmatch(form[:position], partial=True):
            return position, ""
    return None, f"too short: {len(form)} characters, the format needs more"


# How the public check page compares keys, whatever the product's policy:
# spaces, dashes and case never matter there (its promise to buyers).
LOOSE_RULES = KeyRules(collapse_spaces=True, casefold=True, strip_separators="- ")


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
