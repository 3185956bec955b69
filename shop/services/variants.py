"""Variants: what a buyer's choice sells, and what a variant takes from its product."""

from __future__ import annotations

from shop.models import VARIANT_INHERITED, Product
from shop.services.checkout_errors import CheckoutError


def variant_chosen(*, product: Product, variant: int | None) -> Product:
    """What is sold when a buyer orders ``product`` (by its slug) with
    ``variant`` (an id, or None): a product without variants itself, one with
    variants only through an active one of them, and a variant named by its
    own slug itself. Raises VARIANT_REQUIRED or VARIANT_NOT_FOUND (one query;
    none for a variant named by its slug, nor for a product read with
    ``has_variants`` annotated False)."""
    not_found = CheckoutError(code="VARIANT_NOT_FOUND", field="variant",
                              message="This product has no such option for sale.")
    if product.parent_id is not None:
        if variant not in (None, product.pk):
            raise not_found
        return product
    if getattr(product, "has_variants", True) is False:  # read with its product: no query
        if variant is None:
            return product
        raise not_found
    options = {v.pk: v for v in Product.objects.filter(parent=product)}
    if not options and variant is None:
        return product
    if variant is None:
        if not any(v.active for v in options.values()):
            raise not_found
        raise CheckoutError(code="VARIANT_REQUIRED", message="Choose one of this product's options.",
                            field="variant")
    chosen = options.get(variant)
    if chosen is None or not chosen.active:
        raise not_found
    chosen.parent = product
    return chosen


def product_variants_sync(*, product: Product) -> int:
    """Give ``product``'s variants its category, currency, hold time, delivery
    channels and self-service replacements (``VARIANT_INHERITED``): they are
    sold, shown and delivered as it is. Returns how many were updated."""
    inherited = {name: getattr(product, name) for name in VARIANT_INHERITED}
    return Product.objects.filter(parent=product).update(**inherited)
