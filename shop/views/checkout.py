"""The product page, which is the checkout: price check, order and the hand-off to payment."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _

from payments.methods import ProviderUnknown, methods_offered
from payments.services import PaymentStartFailed, checkout_start_payment
from riskctl.identity import client_ip, device_id
from riskctl.services import CheckoutBlocked
from shop.access import order_session_grant
from shop.checkout_limits import checkout_limit_reached
from shop.forms import CheckoutForm
from shop.models import Product
from shop.profile import contact_sentence
from shop.selectors import product_sold, product_stock, product_tiers, products_for_sale, products_related
from shop.services import CheckoutError, price_quote
from shop.services.manual import ANSWER_MAX_LENGTH, ManualFieldError, manual_fields_of


def _checkout_error_message(exc: CheckoutError) -> str:
    """The buyer's language for the codes a buyer can fix; the service's text otherwise."""
    known = {
        "COUPON_INVALID": _("This coupon code is not valid for this product."),
        "COUPON_EXPIRED": _("This coupon has expired."),
        "COUPON_USED_UP": _("This coupon has been used up."),
        "OUT_OF_STOCK": _("Not enough stock left for this quantity."),
        "QUERY_PASSWORD_SHORT": _("A query password has at least 6 characters."),
        "EMAIL_INVALID": _("Enter a valid email address."),
        "PHONE_INVALID": _("Enter the phone number with digits only, for example +8613800138000."),
        "PRODUCT_NOT_FOUND": _("This product is no longer for sale. Choose another one from the catalogue."),
        "QUANTITY_INVALID": _("Choose a quantity this product allows (see the limit next to the quantity)."),
        "TOO_MANY_UNPAID": _("You already have unpaid orders waiting. Pay one of them (Find my order opens it), "
                             "or wait until its hold ends."),
        "VARIANT_REQUIRED": _("Choose one of the options first."),
        "VARIANT_NOT_FOUND": _("This option is no longer for sale. Choose another one."),
    }
    return known.get(exc.code, exc.message)


def _manual_field_message(exc: ManualFieldError) -> str:
    """A manual product's answer refused, in the buyer's language, for beside its field."""
    field = exc.manual_field
    label = field.display_label if field else exc.key
    limit = {"too_long": min(getattr(field, "max_length", None) or ANSWER_MAX_LENGTH, ANSWER_MAX_LENGTH),
             "too_small": getattr(field, "min_value", None), "too_big": getattr(field, "max_value", None)}
    messages_by_reason = {
        "required": _("Fill in %(label)s."),
        "too_long": _("%(label)s: at most %(n)s characters."),
        "not_a_number": _("%(label)s: enter a number."),
        "too_small": _("%(label)s: at least %(n)s."),
        "too_big": _("%(label)s: at most %(n)s."),
        "not_a_choice": _("%(label)s: choose one of the options."),
    }
    if exc.reason == "no_match" and field is not None and field.display_pattern_message:
        return field.display_pattern_message  # the owner's words, e.g. "请输入正确的QQ号"
    text = messages_by_reason.get(exc.reason, _("%(label)s: check this answer."))
    return text % {"label": label, "n": limit.get(exc.reason)}


def _method_chosen(request, methods) -> str:
    """The payment method the buyer picked; the only one offered needs no pick."""
    chosen = request.POST.get("method") or request.POST.get("provider", "")
    if not chosen and len(methods) == 1:
        return methods[0].id
    return chosen


def _variant_requested(request) -> int | None:
    raw = request.POST.get("variant") or request.GET.get("variant") or ""
    return int(raw) if raw.isdigit() and len(raw) < 10 else None


def product_detail(request, slug: str):
    """The product page. A product with variants offers them as links
    (``?variant=id``, no script needed): the one chosen (else the first in
    price order) sets the price, the stock, the quantity limit, the tiers and
    the payment methods, and is what the form orders."""
    product = get_object_or_404(Product.objects.select_related("parent"), slug=slug, active=True)
    if product.parent_id is not None:  # a variant's own address: its product's page, with it chosen
        if not product.parent.active:
            raise Http404("This product is not for sale.")
        return redirect(f"{reverse('shop:product', args=[product.parent.slug])}?variant={product.pk}")
    every_variant = list(Product.objects.filter(parent=product).order_by("price", "id"))
    product.has_variants = bool(every_variant)  # checkout need not look for them again
    variants = [v for v in every_variant if v.active]
    requested = _variant_requested(request)
    item = next((v for v in variants if v.pk == requested), variants[0] if variants else product)
    if item is not product:
        item.parent = product  # the page's product: read once, not again for the variant's name
    manual_fields = manual_fields_of(product=item)
    form = CheckoutForm(request.POST or None, max_quantity=item.max_per_order, manual_fields=manual_fields)
    methods = methods_offered(product_id=item.pk, amount=item.price, parent_id=item.parent_id)
    error = None
    quote = None
    limited = None
    if request.method == "POST":
        limited = checkout_limit_reached(request, email=request.POST.get("email", ""),
                                         device=request.POST.get("device_id", ""))
    if limited is not None:
        error = ("RATE_LIMITED", _("Too many orders from your network. Please wait a minute and try again.")
                 if limited.scope == "ADDRESS" else _("Too many orders in a short time. Please wait a minute "
                                                      "and try again."))
    elif request.method == "POST" and "preview" in request.POST:
        # "Check price": the server's price for this quantity and coupon, no order placed.
        form.is_valid()
        quantity = form.cleaned_data.get("quantity")
        if quantity:
            try:
                quote = price_quote(product=item, quantity=quantity,
                                    coupon_code=form.cleaned_data.get("coupon", ""))
            except CheckoutError as exc:
                error = (exc.code, _checkout_error_message(exc))
        form = CheckoutForm(initial={**request.POST.dict(), "terms": False}, max_quantity=item.max_per_order,
                            manual_fields=manual_fields)
        # The buyer's own password on their own page (sent no-store): checking
        # the price must not make them type it again. Only this re-render.
        form.fields["query_password"].widget.render_value = True
    elif request.method == "POST" and form.is_valid() and not _method_chosen(request, methods):
        error = ("METHOD_REQUIRED", _("Choose how you want to pay."))
    elif request.method == "POST" and form.is_valid():
        try:
            started = checkout_start_payment(
                product_slug=product.slug,
                quantity=form.cleaned_data["quantity"],
                email=form.cleaned_data["email"],
                phone=form.cleaned_data["phone"],
                provider_id=_method_chosen(request, methods),
                client_ip=client_ip(request),
                device=device_id(request, request.POST.get("device_id", "")),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                coupon=form.cleaned_data["coupon"],
                query_password=form.cleaned_data["query_password"],
                # what the buyer chose (an unknown one is refused), else the one shown
                variant=requested if requested is not None else (item.pk if every_variant else None),
                fields=form.manual_answers(),
                product_read=product,  # read above: not again
            )
        except ManualFieldError as exc:  # shown beside the field it is about
            form.add_error(form.manual_names.get(exc.key), _manual_field_message(exc))
            error = (exc.code, _("Check the answers marked below."))
        except CheckoutError as exc:
            error = (exc.code, _checkout_error_message(exc))
        except CheckoutBlocked as exc:
            error = (exc.code, contact_sentence(
                reachable=_("We cannot take this order. Contact us with reference %(ref)s.") % {"ref": exc.ref},
                unreachable=_("We cannot take this order (reference %(ref)s).") % {"ref": exc.ref}))
        except ProviderUnknown:
            error = ("PROVIDER_UNKNOWN", _("This payment method is not available for this order. "
                                           "Choose another one."))
        except PaymentStartFailed as exc:
            # The order exists and holds its stock: its page offers Pay now.
            order_session_grant(request, exc.order.order_no)
            messages.error(request, _("The payment service did not answer. Press Pay now to try again, "
                                      "or choose another way to pay."))
            return redirect("shop:order", order_no=exc.order.order_no)
        else:
            order_session_grant(request, started.order.order_no)
            return redirect(started.pay_url)
    # One pass over the catalogue gives this product's stock and sold count
    # and the related products' (an inactive product is not in it: counted alone).
    listed = products_for_sale()
    this = next((p for p in listed if p.pk == product.pk), None)
    counted = next((v for v in this.variants_for_sale if v.pk == item.pk), this) if this else None
    context = {
        "product": product, "item": item, "variants": this.variants_for_sale if this else [],
        "grouped": bool(every_variant), "form": form, "error": error, "quote": quote,
        "stock": counted.stock if counted else product_stock(product=item),
        "stock_unlimited": getattr(counted, "stock_unlimited", False),
        "sold": this.sold if this else product_sold(product=product),
        "tiers": product_tiers(product=item), "methods": methods,
        "method_chosen": request.POST.get("method", "") if request.method == "POST" else "",
        "related": products_related(product=product, listed=listed),
    }
    status = 429 if limited else 400 if error and quote is None and "preview" not in request.POST else 200
    response = render(request, "shop/product.html", context, status=status)
    if limited:
        response["Retry-After"] = str(limited.retry_after)
    if request.method == "POST":  # it may show the buyer's query password again: never stored
        add_never_cache_headers(response)
    return response
