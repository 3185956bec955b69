"""URLs of the key verification API, its OpenAPI document, the public key
check page and the order page's "free this activation slot" button."""

from django.urls import path

from shop import keys_api
from shop.ops import openapi

app_name = "keys"

urlpatterns = [
    path("api/v1/openapi.json", openapi.openapi_document, name="openapi"),
    path("api/v1/keys/verify", keys_api.keys_verify, name="verify"),
    path("api/v1/keys/redeem", keys_api.keys_redeem, name="redeem"),
    path("api/v1/keys/activate", keys_api.keys_activate, name="activate"),
    path("api/v1/keys/validate", keys_api.keys_validate, name="validate"),
    path("api/v1/keys/deactivate", keys_api.keys_deactivate, name="deactivate"),
    path("keys/check", keys_api.key_check_page, name="check"),
    path("orders/<str:order_no>/activations/<int:activation_id>/deactivate", keys_api.order_activation_deactivate,
         name="order-activation-deactivate"),
]
