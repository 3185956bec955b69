"""What the writers of one import share: the source's name, the report, the
ids already mapped, and the ImportRecord reads and writes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import models
from django.utils.text import slugify

from shop.importers.report import ImportSummary
from shop.models import ImportRecord


@dataclass
class ImportContext:
    label: str  # the source's name in ImportRecord and on batches: "dujiaoka", or the name given
    summary: ImportSummary
    currency: str
    order_prefix: str
    progress: Callable[[str, int], None] | None = None
    categories: dict[int, int] = field(default_factory=dict)  # source id → Category id
    products: dict[int, int] = field(default_factory=dict)  # source id → Product id (live here)
    variants: dict[tuple[int, str], int] = field(default_factory=dict)  # (source product id, variant key) → Product id
    kinds: dict[int, str] = field(default_factory=dict)  # source product id → its kind
    product_category: dict[int, int | None] = field(default_factory=dict)  # source product → source category
    coupons: dict[int, int] = field(default_factory=dict)  # source id → Coupon id

    @property
    def actor(self) -> str:
        return f"import:{self.label}"

    def tick(self, phase: str, n: int = 1) -> None:
        if self.progress is not None:
            self.progress(phase, n)


def product_target(*, ctx: ImportContext, product_id: int, variant: str = "") -> int | None:
    """The product here that a key or order of source product ``product_id``
    goes to: the variant it names (``SourceVariant.key``) if it names one."""
    return ctx.variants.get((product_id, variant)) if variant else ctx.products.get(product_id)


def variant_record_id(product_id: int, key: str) -> str:
    """A variant's ``ImportRecord.source_id`` (at most 64 characters): its
    product's id and its 种类 (as earlier runs wrote it), or a digest of the
    choice when it has SKU options (the key then holds a separator)."""
    if "\x1f" not in key:
        return f"{product_id}/{key}"[:64]
    return f"{product_id}/sku:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def records_map(*, ctx: ImportContext, entity: str) -> dict[str, int]:
    """source id (text) → target id of what earlier runs brought across."""
    return dict(ImportRecord.objects.filter(source=ctx.label, entity=entity).values_list("source_id", "target_id"))


def record_add(*, ctx: ImportContext, entity: str, source_id, target_id: int) -> None:
    ImportRecord.objects.create(source=ctx.label, entity=entity, source_id=str(source_id), target_id=target_id)


def live_targets(*, records: dict[str, int], model: type[models.Model]) -> dict[int, int]:
    """The records whose target still exists here (the owner may have deleted
    one since), keyed by the source id as an int."""
    alive = set(model.objects.filter(pk__in=list(records.values())).values_list("pk", flat=True))
    return {int(source_id): target for source_id, target in records.items() if target in alive}


def slug_free(*, model: type[models.Model], name: str, source_id: int, fallback: str) -> str:
    """A unique slug from the name (``netflix-premium-12``); a name with no
    Latin letters gives ``<fallback>-12``."""
    base = slugify(name)[:60].strip("-") or fallback
    base = re.sub(r"-+", "-", f"{base}-{source_id}")[:75]
    slug, n = base, 2
    while model.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug
