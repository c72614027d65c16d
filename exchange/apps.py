from django.apps import AppConfig


class ExchangeConfig(AppConfig):
    """What brings the other apps together, and depends on them (none depends
    on it): the home page, the health endpoints, the demo data."""

    name = "exchange"
    verbose_name = "Exchange"
