"""The OpenAPI 3 description of the public JSON API, served at
``/api/v1/openapi.json``. Kept beside the code it describes; the test suite
runs schemathesis against it (tests/keys/test_openapi.py)."""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.http import require_GET

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error_responses(*statuses: int) -> dict:
    descriptions = {400: "Malformed request", 401: "Missing or unknown credentials", 403: "Refused",
                    404: "Not found", 409: "Conflict with the current state",
                    413: "The body is over 64 KiB (BODY_TOO_LARGE)", 429: "Rate limited (see Retry-After)",
                    503: "The payment provider did not answer (PROVIDER_UNAVAILABLE)"}
    responses = {}
    for status in statuses:
        response = {"description": descriptions[status], "content": {"application/json": {"schema": _ERROR}}}
        if status == 429:
            response["headers"] = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}
        responses[str(status)] = response
    return responses


def _string(max_length: int | None = None, **extra) -> dict:
    schema = {"type": "string", **extra}
    if max_length:
        schema["maxLength"] = max_length
    return schema


_END_USER = _string(150, description="Optional: your id (or IP) of whoever typed the key. Repeated unknown keys "
                                    "then cool down that user only, not your whole API key.")


def _key_operation(*, summary: str, description: str, fields: dict, required: list[str], op_id: str) -> dict:
    fields = {**fields, "end_user": _END_USER}
    return {
        "post": {
            "operationId": op_id,
            "summary": summary,
            "description": description,
            "tags": ["keys"],
            "security": [{"merchantKey": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {
                    "type": "object", "properties": fields, "required": required,
                }}},
            },
            "responses": {
                "200": {"description": "The outcome (valid or not)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KeyResult"}}}},
                **_error_responses(400, 401, 403, 413, 429),
            },
        }
    }


_KEY = _string(200, description="The key as the user typed it: case, spaces, dashes and (per product) 0/O 1/I/L "
                               "do not matter.")
_INSTANCE = _string(200, description="Instance name or fingerprint (machine id, seat).")

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {
        "title": "Kamidrop API",
        "version": "1",
        "description": (
            "Errors: {\"error\": {\"code\", \"message\", \"ref\"}}. Order endpoints take the order's token, "
            "key endpoints a merchant API key (created in the admin), both as 'Authorization: Bearer ...'. "
            "Key endpoints answer business outcomes with 200 and valid=false; only malformed or unauthorised "
            "requests get 4xx."
        ),
    },
    "paths": {
        "/api/v1/products": {
            "get": {
                "operationId": "productsList",
                "summary": "Products for sale",
                "tags": ["shop"],
                "responses": {"200": {"description": "Products", "content": {"application/json": {"schema": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Product"}}}}}},
            }
        },
        "/api/v1/orders": {
            "post": {
                "operationId": "orderCreate",
                "summary": "Place an order",
                "tags": ["shop"],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {
                        "product": _string(80), "quantity": {"type": "integer"}, "email": _string(254),
                        "phone": _string(40),
                        "provider": {"type": "string", "maxLength": 20, "description": (
                            "A payment method id (GET /api/v1/payment-methods): the environment's sandbox, epay, "
                            "alipay, wechat, usdt, stripe, or one the owner added. Default: sandbox.")},
                        "method": {"type": "string", "maxLength": 20, "description": "Alias of provider."},
                        "device_id": _string(64), "coupon": _string(40),
                        "variant": {"type": "integer", "description": (
                            "Required for a product with variants: the id of one of its variants "
                            "(GET /api/v1/products). VARIANT_REQUIRED without it, VARIANT_NOT_FOUND (404) for an "
                            "id that is not one of this product's variants for sale.")},
                        "fields": {"type": "object", "additionalProperties": {
                            "oneOf": [{"type": "string"}, {"type": "number"}]},
                                   "description": (
                            "A manual product's answers, by field key (the product's fields in GET "
                            "/api/v1/products), e.g. {\"account\": \"12345\", \"server\": \"Asia\"}. A missing "
                            "required answer is FIELD_REQUIRED, a wrong one (too long, not a number, out of range, "
                            "not one of the choices, an unknown key) FIELD_INVALID; the error's fields names it as "
                            "fields.<key>. Ignored for other kinds. The answers are stored sealed.")},
                    },
                    "required": ["product", "quantity", "email"],
                }}}},
                "responses": {
                    "201": {"description": "Created", "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/OrderCreated"}}}},
                    **_error_responses(400, 403, 404, 409, 413, 429, 503),
                },
            }
        },
        "/api/v1/payment-methods": {
            "get": {
                "operationId": "paymentMethods",
                "summary": "The payment methods a buyer may use (for one product with ?product=)",
                "tags": ["shop"],
                "parameters": [{"name": "product", "in": "query", "required": False, "schema": _string(80)}],
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": {
                        "type": "array", "items": {"$ref": "#/components/schemas/PaymentMethod"}}}}},
                    **_error_responses(404),
                },
            }
        },
        "/api/v1/orders/{order_no}": {
            "get": {
                "operationId": "orderRead",
                "summary": "Read an order",
                "tags": ["shop"],
                "security": [{"orderToken": []}],
                "parameters": [{"name": "order_no", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[A-Za-z0-9]{1,32}$"}}],
                "responses": {
                    "200": {"description": "The order", "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/Order"}}}},
                    **_error_responses(401, 404, 429),
                },
            }
        },
        "/api/v1/orders/{order_no}/resend": {
            "post": {
                "operationId": "orderResend",
                "summary": "Send the keys again to the order's channels",
                "tags": ["shop"],
                "security": [{"orderToken": []}],
                "parameters": [{"name": "order_no", "in": "path", "required": True,
                                "schema": {"type": "string", "pattern": "^[A-Za-z0-9]{1,32}$"}}],
                "responses": {
                    "202": {"description": "Resent", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"order_no": {"type": "string"},
                                                         "resent": {"type": "array", "items": {"type": "string"}}},
                        "required": ["order_no", "resent"]}}}},
                    **_error_responses(401, 404, 409, 429),
                },
            }
        },
        "/api/v1/keys/verify": _key_operation(
            op_id="keyVerify", summary="Check a key (changes nothing)",
            description="VALID, ALREADY_REDEEMED (with redeemed_at and a masked redeemer), VOID, NOT_SOLD (the key "
                        "is in stock or reserved for an order not handed over yet), NOT_FOUND, FORMAT_INVALID "
                        "(with a hint naming the character to check).",
            fields={"key": _KEY}, required=["key"],
        ),
        "/api/v1/keys/redeem": _key_operation(
            op_id="keyRedeem", summary="Redeem a key, once",
            description="Atomic. Repeating a call with the same redemption_id answers VALID with replayed=true; "
                        "another redemption_id gets ALREADY_REDEEMED. Staff may revert a redemption.",
            fields={"key": _KEY, "redemption_id": _string(100, description="Your id for this redemption."),
                    "redeemer": _string(150, description="Your label or id of the user (shown masked).")},
            required=["key", "redemption_id"],
        ),
        "/api/v1/keys/activate": _key_operation(
            op_id="keyActivate", summary="Activate a licence key on an instance",
            description="Up to the product's activation limit; the same instance again is replayed. "
                        "ACTIVATION_DISABLED when the product has no activations, ACTIVATION_LIMIT_REACHED when full.",
            fields={"key": _KEY, "instance": _INSTANCE}, required=["key", "instance"],
        ),
        "/api/v1/keys/validate": _key_operation(
            op_id="keyValidate", summary="Is the key active on this instance?",
            description="VALID or INSTANCE_NOT_ACTIVATED (or why the key itself is not valid).",
            fields={"key": _KEY, "instance": _INSTANCE}, required=["key", "instance"],
        ),
        "/api/v1/keys/deactivate": _key_operation(
            op_id="keyDeactivate", summary="Free the instance's activation slot",
            description="VALID when freed, INSTANCE_NOT_ACTIVATED when it was not active.",
            fields={"key": _KEY, "instance": _INSTANCE}, required=["key", "instance"],
        ),
    },
    "components": {
        "securitySchemes": {
            "merchantKey": {"type": "http", "scheme": "bearer", "description": "Merchant API key (kd_...)"},
            "orderToken": {"type": "http", "scheme": "bearer", "description": "The order's access token"},
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message", "ref"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "ref": {"type": "string"},
                               "fields": {"type": "array", "items": {"type": "string"}}},
            }}},
            "Variant": {"type": "object", "required": ["id", "name", "price", "stock"], "properties": {
                "id": {"type": "integer", "description": "Order it as POST /api/v1/orders {product, variant: id}"},
                "name": {"type": "string", "description": "The option's own name (\"90 days\"), in the request's "
                                                          "language"},
                "name_en": {"type": "string"}, "name_zh": {"type": "string"},
                "kind": {"type": "string", "enum": ["unique", "reusable", "manual"]},
                "price": {"type": "string"},
                "stock": {"type": "integer", "nullable": True, "description": "As the product's stock"},
                "max_per_order": {"type": "integer"},
                "fields": {"type": "array", "items": {"$ref": "#/components/schemas/ManualField"},
                           "description": "A manual variant's questions (its own, else its product's)"}}},
            "Product": {"type": "object", "required": ["slug", "name", "kind", "price", "currency", "stock",
                                                       "variants"],
                        "properties": {
                "slug": {"type": "string"},
                "kind": {"type": "string", "enum": ["unique", "reusable", "manual"],
                         "description": "unique: each key is sold once; reusable: every buyer gets the same key; "
                                        "manual: no keys, the buyer answers the product's fields and staff "
                                        "deliver by hand (the order is PREPARING meanwhile)"},
                "fields": {"type": "array", "description": "A manual product's questions (only manual products have it)",
                           "items": {"$ref": "#/components/schemas/ManualField"}},
                "name": {"type": "string", "description": "In the request's language (Accept-Language: en or "
                                                          "zh-Hans), the other one when that is empty"},
                "price": {"type": "string", "description": "With variants: the cheapest variant's"},
                "currency": {"type": "string"},
                "stock": {"type": "integer", "nullable": True,
                          "description": "Keys a new buyer can get; null: no limit (a reusable product without a "
                                         "cap, a manual product). With variants: theirs together"},
                "variants": {"type": "array", "items": {"$ref": "#/components/schemas/Variant"},
                             "description": "Empty for a product without variants; else it is ordered through one"},
                "name_en": {"type": "string"}, "name_zh": {"type": "string", "description": "Empty when not set"},
                "sold": {"type": "integer", "description": "Keys delivered to buyers"},
                "category": {"type": "string", "nullable": True, "description": "The category's slug"},
                "image": {"type": "string", "nullable": True, "description": "Absolute URL, at most 1200 px"},
                "thumbnail": {"type": "string", "nullable": True, "description": "Absolute URL, 480×360"}}},
            "ManualField": {"type": "object", "required": ["key", "label", "type", "required"], "properties": {
                "key": {"type": "string", "description": "The name to send the answer under in POST /api/v1/orders"},
                "label": {"type": "string", "description": "In the request's language"},
                "type": {"type": "string", "enum": ["text", "number", "select"]},
                "required": {"type": "boolean"},
                "choices": {"type": "array", "items": {"type": "string"}, "description": "select: the answers allowed"},
                "max_length": {"type": "integer", "nullable": True},
                "min": {"type": "string", "nullable": True}, "max": {"type": "string", "nullable": True},
                "pattern": {"type": "string", "nullable": True,
                            "description": "A regular expression the answer must match somewhere (else FIELD_INVALID)"},
                "help": {"type": "string"}}},
            "OrderCreated": {"type": "object", "required": ["order_no", "token", "status", "amount", "currency",
                                                            "pay_url"], "properties": {
                "order_no": {"type": "string"}, "token": {"type": "string"}, "status": {"type": "string"},
                "amount": {"type": "string"}, "currency": {"type": "string"}, "pay_url": {"type": "string"},
                "pay": {"type": "object", "required": ["kind", "method", "amount", "currency"], "properties": {
                    "kind": {"type": "string", "enum": ["REDIRECT", "FORM", "QR"]}, "method": {"type": "string"},
                    "amount": {"type": "string"}, "currency": {"type": "string"}, "qr": {"type": "string"},
                    "app_url": {"type": "string"}, "address": {"type": "string"}}}}},
            "PaymentMethod": {"type": "object", "required": ["id", "name", "provider", "channel", "icon", "fee"],
                              "properties": {
                "id": {"type": "string"}, "name": {"type": "string"}, "provider": {"type": "string"},
                "channel": {"type": "string"}, "icon": {"type": "string"}, "fee": {"type": "string"}}},
            "Order": {"type": "object", "required": ["order_no", "status", "quantity", "amount", "currency", "keys",
                                                     "events"], "properties": {
                "order_no": {"type": "string"}, "status": {"type": "string"}, "quantity": {"type": "integer"},
                "amount": {"type": "string"}, "currency": {"type": "string"},
                "keys": {"type": "array", "items": {"type": "string"}},
                "events": {"type": "array", "items": {"type": "object", "properties": {
                    "type": {"type": "string"}, "at": {"type": "string"}}}}}},
            "KeyResult": {"type": "object", "required": ["valid", "code", "message"], "properties": {
                "valid": {"type": "boolean"},
                "code": {"type": "string", "enum": [
                    "VALID", "ALREADY_REDEEMED", "VOID", "NOT_SOLD", "NOT_FOUND", "FORMAT_INVALID",
                    "ACTIVATION_DISABLED", "ACTIVATION_LIMIT_REACHED", "INSTANCE_NOT_ACTIVATED"]},
                "message": {"type": "string"},
                "product": {"type": "string"},
                "hint": {"type": "string"},
                "position": {"type": "integer", "nullable": True},
                "redeemed_at": {"type": "string"},
                "redeemer": {"type": "string"},
                "redemption_id": {"type": "string"},
                "replayed": {"type": "boolean"},
                "instance": {"type": "string"},
                "activations": {"type": "object", "properties": {"used": {"type": "integer"},
                                                                 "limit": {"type": "integer"}}},
            }},
        },
    },
}


@require_GET
def openapi_document(request):
    return JsonResponse(DOCUMENT)
