from django.apps import AppConfig


class ExchangeConfig(AppConfig):
    """What brings the other apps together, and depends on them (none depends
    on it): the home page, the health endpoints, the demo data, media_orphans
    (which repairs rows of several apps)."""

    name = "exchange"
    verbose_name = "Exchange"

    def ready(self) -> None:
        from exchange import checks  # noqa: F401 (registers them)
