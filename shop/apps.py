from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = "Shop"

    def ready(self):
        # An owner alert on each admin login lockout (django-axes' signal).
        from shop.adminlogin import signals_connect

        signals_connect()
