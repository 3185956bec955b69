"""Delivery channels, loaded by dotted path from ``DELIVERY_CHANNELS``."""

from django.conf import settings
from django.utils.module_loading import import_string


def channel_get(name: str):
    return import_string(settings.DELIVERY_CHANNELS[name])()
