"""Checking, redeeming and activating sold keys for merchants and buyers.

A submitted key is matched the way the product's ``KeyPolicy`` says (spaces,
separators, case, 0/O 1/I/L) through the fingerprint, never by decrypting.
The caller names the products whose rules apply (a merchant API key's scope;
every product for the public page); each is tried. The public page also
finds a key that differs only in case, spaces and dashes, whatever the policy
(``loose``: it promises buyers that). The format is checked only when nothing
matched, so an input that differs from the stored key only in what the policy
folds is still found, and a typo gets a position hint.

Outcomes (``KeyCheck.code``):
- ``VALID``: a delivered key, not redeemed (for ``key_redeem``: now redeemed);
- ``ALREADY_REDEEMED``: a live redemption exists (its date and redeemer);
- ``VOID``: the owner voided it;
- ``NOT_SOLD``: the key is in stock or reserved for an order not yet handed
  over (held for review, say): nobody can legitimately hold it yet;
- ``NOT_FOUND``: no such key in the scope;
- ``FORMAT_INVALID``: no such key, and it does not have the format of any
  product in scope (``hint`` says where).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory import sealing
from inventory.keyrules import LOOSE_RULES
from inventory.models import CardKey, CardKeyStatus, KeyActivation, KeyAuditEvent, KeyPolicy, KeyRedemption
from inventory.services import keys_audit
from shop.project.locks import keys_lock

VALID = "VALID"
ALREADY_REDEEMED = "ALREADY_REDEEMED"
VOID = "VOID"
NOT_SOLD = "NOT_SOLD"
NOT_FOUND = "NOT_FOUND"
FORMAT_INVALID = "FORMAT_INVALID"
ACTIVATION_DISABLED = "ACTIVATION_DISABLED"
ACTIVATION_LIMIT_REACHED = "ACTIVATION_LIMIT_REACHED"
INSTANCE_NOT_ACTIVATED = "INSTANCE_NOT_ACTIVATED"

MAX_KEY_LENGTH = 200
# When one key string is in several products of the scope, the sold one wins.
_STATUS_RANK = {CardKeyStatus.DELIVERED: 0, CardKeyStatus.VOID: 1, CardKeyStatus.RESERVED: 2,
                CardKeyStatus.HELD: 3, CardKeyStatus.AVAILABLE: 4}


class RedemptionStateError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class KeyCheck:
    code: str
    card_key: CardKey | None = None
    redemption: KeyRedemption | None = None
    hint: str = ""
    position: int | None = None
    # NOT_FOUND only: the input had the format of a product in scope (what a guesser sends).
    format_ok: bool = False
    # key_redeem / key_activate: the same request had already succeeded.
    replayed: bool = False
    activation: KeyActivation | None = None
    activations_used: int = 0
    activation_limit: int = 0

    @property
    def valid(self) -> bool:
        return self.code == VALID


def redeemer_mask(redeemer: str) -> str:
    """Enough for the merchant to recognise its user, too little to identify one."""
    if not redeemer:
        return ""
    if len(redeemer) <= 4:
        return redeemer[0] + "***"
    return f"{redeemer[:2]}***{redeemer[-2:]}"


def _policies(product_ids: list[int]) -> dict[int, KeyPolicy]:
    found = {p.product_id: p for p in KeyPolicy.objects.filter(product_id__in=product_ids)}
    return {pk: found.get(pk) or KeyPolicy(product_id=pk) for pk in product_ids}


def key_check(*, text: str, product_ids, loose: bool = False) -> KeyCheck:
    """What ``text`` is among the keys of ``product_ids`` (read only). One query
    (two with ``loose`` when the first finds nothing).

    ``loose`` (the public check page): when nothing matches the way the
    product's policy compares, a key equal to ``text`` but for case, spaces
    and dashes still counts (``keyrules.LOOSE_RULES``)."""
    text = text.strip()
    product_ids = sorted(set(product_ids))
    if not text or not product_ids or len(text) > MAX_KEY_LENGTH:
        return _format_result(text=text, policies={}) if text else KeyCheck(code=NOT_FOUND)
    policies = _policies(product_ids)
    wanted = {(pk, sealing.secret_fingerprint(policy.rules.normalise(text))) for pk, policy in policies.items()}
    candidates = [
        key for key in CardKey.objects.filter(
            product_id__in=product_ids, fingerprint__in={fp for _, fp in wanted}
        ).select_related("product").order_by("id")
        if (key.product_id, key.fingerprint) in wanted
    ]
    if not candidates and loose:
        candidates = list(CardKey.objects.filter(
            product_id__in=product_ids, loose_fingerprint=sealing.secret_fingerprint(LOOSE_RULES.normalise(text))
        ).select_related("product").order_by("id"))
    if not candidates:
        return _format_result(text=text, policies=policies)
    key = min(candidates, key=lambda k: (_STATUS_RANK[k.status], k.pk))
    return _state_result(key=key)


def _format_result(*, text: str, policies: dict[int, KeyPolicy]) -> KeyCheck:
    if len(text) > MAX_KEY_LENGTH:
        return KeyCheck(code=FORMAT_INVALID, hint=f"too long: at most {MAX_KEY_LENGTH} characters")
    problems = [policy.rules.format_problem_at(text) for policy in policies.values()]
    if not problems or any(problem is None for problem in problems):
        return KeyCheck(code=NOT_FOUND, format_ok=bool(problems))
    # The product whose format the input follows longest gives the hint.
    position, message = max(problems, key=lambda p: p[0] if p[0] is not None else len(text) + 1)
    return KeyCheck(code=FORMAT_INVALID, hint=message, position=position)


def _state_result(*, key: CardKey, redemption: KeyRedemption | None = None) -> KeyCheck:
    if key.status == CardKeyStatus.VOID:
        return KeyCheck(code=VOID, card_key=key)
    if key.status != CardKeyStatus.DELIVERED:
        return KeyCheck(code=NOT_SOLD, card_key=key)
    if redemption is None:
        redemption = KeyRedemption.objects.filter(card_key=key, reverted_at__isnull=True).first()
    if redemption is not None:
        return KeyCheck(code=ALREADY_REDEEMED, card_key=key, redemption=redemption)
    return KeyCheck(code=VALID, card_key=key)


def key_redeem(
    *, text: str, product_ids, redemption_id: str, redeemer: str = "", api_key_id: int | None = None,
    actor: str, ip: str | None = None,
) -> KeyCheck:
    """Redeem the key ``text`` names: VALID if it is now redeemed (or was, by
    this same ``redemption_id``: ``replayed``), else why not. The key's row is
    locked while its redemptions are read and written, so two concurrent
    redemptions of one key cannot both succeed (the partial unique index on
    live redemptions backs that up)."""
    found = key_check(text=text, product_ids=product_ids)
    if found.card_key is None:
        return found
    try:
        with transaction.atomic():
            key = keys_lock(CardKey.objects.filter(pk=found.card_key.pk))[0]
            live = KeyRedemption.objects.filter(card_key=key, reverted_at__isnull=True).first()
            if live is not None and live.redemption_id == redemption_id:
                return KeyCheck(code=VALID, card_key=key, redemption=live, replayed=True)
            state = _state_result(key=key, redemption=live)
            if state.code != VALID:
                return state
            redemption = KeyRedemption.objects.create(
                card_key=key, api_key_id=api_key_id, redemption_id=redemption_id[:100], redeemer=redeemer[:150]
            )
            keys_audit(key_ids=[key.pk], action=KeyAuditEvent.Action.REDEEMED, actor=actor, ip=ip,
                       detail=f"redemption {redemption_id}")
    except IntegrityError:  # lost to a concurrent redemption that committed first
        return _state_result(key=CardKey.objects.get(pk=found.card_key.pk))
    return KeyCheck(code=VALID, card_key=key, redemption=redemption)


def key_redemption_revert(*, redemption_pk: int, reason: str, actor: str, ip: str | None = None) -> KeyRedemption:
    """Staff: undo a live redemption (the key can be redeemed again). Locks the
    key, then the redemption."""
    if not reason.strip():
        raise RedemptionStateError("REASON_REQUIRED", "Give a reason for the revert.")
    with transaction.atomic():
        key_id = KeyRedemption.objects.filter(pk=redemption_pk).values_list("card_key_id", flat=True).first()
        if key_id is None:
            raise RedemptionStateError("REDEMPTION_NOT_FOUND", "No such redemption.")
        keys_lock(CardKey.objects.filter(pk=key_id))
        changed = KeyRedemption.objects.filter(pk=redemption_pk, reverted_at__isnull=True).update(
            reverted_at=timezone.now(), reverted_by=actor[:150], revert_reason=reason[:200]
        )
        if not changed:
            raise RedemptionStateError("REDEMPTION_NOT_LIVE", "This redemption was already reverted.")
        redemption = KeyRedemption.objects.get(pk=redemption_pk)
        keys_audit(key_ids=[key_id], action=KeyAuditEvent.Action.REDEMPTION_REVERTED, actor=actor, ip=ip,
                   detail=f"redemption {redemption.redemption_id}: {reason}")
    return redemption


# --- licence activations ---------------------------------------------------------------


def _activation_state(*, key: CardKey) -> tuple[int, int]:
    limit = KeyPolicy.objects.filter(product_id=key.product_id).values_list("activation_limit", flat=True).first()
    used = KeyActivation.objects.filter(card_key=key, deactivated_at__isnull=True).count()
    return used, limit or 0


def key_activate(*, text: str, product_ids, instance_id: str, actor: str, ip: str | None = None) -> KeyCheck:
    """Activate the key on ``instance_id`` if its product allows activations and
    a slot is free; activating the same instance again is a no-op (``replayed``)."""
    found = key_check(text=text, product_ids=product_ids)
    if found.card_key is None:
        return found
    with transaction.atomic():
        key = keys_lock(CardKey.objects.filter(pk=found.card_key.pk))[0]
        state = _state_result(key=key, redemption=None)
        if state.code not in (VALID,):
            return state
        used, limit = _activation_state(key=key)
        if limit == 0:
            return KeyCheck(code=ACTIVATION_DISABLED, card_key=key)
        live = KeyActivation.objects.filter(card_key=key, instance_id=instance_id, deactivated_at__isnull=True).first()
        if live is not None:
            return KeyCheck(code=VALID, card_key=key, activation=live, replayed=True, activations_used=used,
                            activation_limit=limit)
        if used >= limit:
            return KeyCheck(code=ACTIVATION_LIMIT_REACHED, card_key=key, activations_used=used,
                            activation_limit=limit)
        activation = KeyActivation.objects.create(card_key=key, instance_id=instance_id[:200])
        keys_audit(key_ids=[key.pk], action=KeyAuditEvent.Action.ACTIVATED, actor=actor, ip=ip,
                   detail=f"instance {instance_id}"[:300])
    return KeyCheck(code=VALID, card_key=key, activation=activation, activations_used=used + 1,
                    activation_limit=limit)


def key_activation_validate(*, text: str, product_ids, instance_id: str) -> KeyCheck:
    """VALID if the key is good and active on ``instance_id`` (read only)."""
    found = key_check(text=text, product_ids=product_ids)
    if found.code != VALID:
        return found
    key = found.card_key
    used, limit = _activation_state(key=key)
    live = KeyActivation.objects.filter(card_key=key, instance_id=instance_id, deactivated_at__isnull=True).first()
    if live is None:
        return KeyCheck(code=INSTANCE_NOT_ACTIVATED, card_key=key, activations_used=used, activation_limit=limit)
    return KeyCheck(code=VALID, card_key=key, activation=live, activations_used=used, activation_limit=limit)


def key_activation_deactivate(
    *, activation_pk: int, actor: str, ip: str | None = None, order_id: int | None = None,
) -> KeyActivation:
    """Free the slot ``activation_pk`` holds. With ``order_id`` (the buyer on
    the order page) the activation must belong to a key of that order."""
    with transaction.atomic():
        row = KeyActivation.objects.filter(pk=activation_pk).values_list(
            "card_key_id", "card_key__order_line__order_id"
        ).first()
        if row is None or (order_id is not None and row[1] != order_id):
            raise RedemptionStateError("ACTIVATION_NOT_FOUND", "No such activation.")
        key_id = row[0]
        keys_lock(CardKey.objects.filter(pk=key_id))
        changed = KeyActivation.objects.filter(pk=activation_pk, deactivated_at__isnull=True).update(
            deactivated_at=timezone.now(), deactivated_by=actor[:150]
        )
        if not changed:
            raise RedemptionStateError("ACTIVATION_NOT_LIVE", "This activation was already deactivated.")
        activation = KeyActivation.objects.get(pk=activation_pk)
        keys_audit(key_ids=[key_id], action=KeyAuditEvent.Action.DEACTIVATED, actor=actor, ip=ip,
                   detail=f"instance {activation.instance_id}"[:300])
    return activation


def key_activation_find(*, text: str, product_ids, instance_id: str) -> KeyActivation | None:
    """The live activation of the key ``text`` on ``instance_id`` (for the API's deactivate)."""
    found = key_check(text=text, product_ids=product_ids)
    if found.card_key is None:
        return None
    return KeyActivation.objects.filter(
        card_key=found.card_key, instance_id=instance_id, deactivated_at__isnull=True
    ).first()


def activations_for_order(*, order_id: int):
    """Live activations of an order's keys, for the order page."""
    return (
        KeyActivation.objects.filter(card_key__order_line__order_id=order_id, deactivated_at__isnull=True)
        .order_by("card_key_id", "created_at", "id")
    )
