"""WSGI entry point, used by gunicorn (``crypto_exchange.wsgi:application``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crypto_exchange.settings")

application = get_wsgi_application()
