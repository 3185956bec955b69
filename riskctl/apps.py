from django.apps import AppConfig


class RiskctlConfig(AppConfig):
    name = "riskctl"
    verbose_name = "Risk control"
