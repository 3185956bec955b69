from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = "Shop"

    def ready(self):
        from django.db.backends.signals import connection_created

        from shop.adminlogin import signals_connect
        from shop.project.stale_plans import stale_plan_retry_install

        # An owner alert on each admin login lockout (django-axes' signal).
        signals_connect()
        # A prepared statement refused after a migration altered its table is run again.
        connection_created.connect(stale_plan_retry_install, dispatch_uid="kamidrop-stale-plan-retry")
