"""Operator interfaces: /healthz, metrics, the invariant audit, the admin dashboard and the API's OpenAPI document."""
