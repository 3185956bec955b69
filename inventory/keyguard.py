"""Brute-force defence for key checks: an escalating cooldown after repeated
NOT_FOUND from one source, a miss budget per API key and per address that
the merchant's ``end_user`` does not split, and a guessing signal for the
owner alert.

Counters live in Django's cache (Redis): losing them loses only the defence's
memory, never a key or a redemption. ``source`` is a short string naming who
asks ("apikey:12", "ip:203.0.113.7"); it is never a key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

COOLDOWN_MAX_SECONDS = 86400
GUESS_WINDOW_SECONDS = 3600


@dataclass(frozen=True)
class MissOutcome:
    misses: int  # NOT_FOUND from this source within KEY_API_MISS_WINDOW_SECONDS
    cooldown_seconds: int  # cooldown started by this miss (0: none)
    guesses_this_hour: int  # well-formed NOT_FOUND from this source in the current hour
    alert: bool  # this miss crossed KEY_API_GUESS_ALERT_MISSES (once per hour and source)


def cooldown_for(misses: int) -> int:
    """Seconds of cooldown that reaching ``misses`` starts (0: none).

    The steps come from ``KEY_API_COOLDOWN_STEPS`` (e.g. 10 → 60 s, 20 → 600 s);
    past the last step every doubling of the misses doubles the cooldown.
    """
    steps = sorted(settings.KEY_API_COOLDOWN_STEPS)
    for threshold, seconds in steps:
        if misses == threshold:
            return seconds
    if not steps:
        return 0
    threshold, seconds = steps[-1]
    while misses > threshold:
        threshold, seconds = threshold * 2, seconds * 2
        if misses == threshold:
            return min(seconds, COOLDOWN_MAX_SECONDS)
    return 0


def _counter_incr(key: str, timeout: int) -> int:
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=timeout)
        return 1


def key_guard_cooldown_left(*, source: str) -> int:
    """Seconds until ``source`` may check keys again (0: now)."""
    until = cache.get(f"keyguard:cooldown:{source}")
    if until is None:
        return 0
    return max(0, int(until - time.time()) + 1)


def key_guard_miss_record(*, source: str, well_formed: bool) -> MissOutcome:
    """Count a NOT_FOUND from ``source``; start a cooldown when a step is reached."""
    misses = _counter_incr(f"keyguard:miss:{source}", settings.KEY_API_MISS_WINDOW_SECONDS)
    cooldown = cooldown_for(misses)
    if cooldown:
        cache.set(f"keyguard:cooldown:{source}", time.time() + cooldown, timeout=cooldown)
    guesses = 0
    if well_formed:
        hour = int(time.time() // GUESS_WINDOW_SECONDS)
        guesses = _counter_incr(f"keyguard:guess:{source}:{hour}", 2 * GUESS_WINDOW_SECONDS)
    return MissOutcome(
        misses=misses, cooldown_seconds=cooldown, guesses_this_hour=guesses,
        alert=well_formed and guesses == settings.KEY_API_GUESS_ALERT_MISSES,
    )


def _budget_source(source: str) -> str:
    # Its own namespace: "apikey:12" is also a per-source cooldown.
    return f"budget:{source}"


def key_guard_budget_left(*, sources: list[str]) -> int:
    """Seconds until every budget in ``sources`` may be spent again (0: now)."""
    return max((key_guard_cooldown_left(source=_budget_source(source)) for source in sources), default=0)


def key_guard_budget_spend(*, budgets: dict[str, int]) -> list[str]:
    """Count a NOT_FOUND against each ``source → limit`` budget; return the
    sources whose budget this miss used up.

    Misses are counted over ``KEY_API_MISS_BUDGET_SECONDS`` from the first
    one; using a budget up starts a cooldown of that length. Only the miss
    that reaches the limit is returned, so the caller alerts once per
    incident however many requests race past the check.
    """
    window = settings.KEY_API_MISS_BUDGET_SECONDS
    spent = []
    for source, limit in budgets.items():
        name = _budget_source(source)
        if _counter_incr(f"keyguard:miss:{name}", window) == limit:
            cache.set(f"keyguard:cooldown:{name}", time.time() + window, timeout=window)
            spent.append(source)
    return spent
