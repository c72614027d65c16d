"""WSGI entry point of ``bench.pages``: the project, plus the floors.

    gunicorn bench.pages_wsgi:application

Settings come from the environment as in production; only ``ROOT_URLCONF`` is
changed, before the application is built, to add the floor views.
"""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crypto_exchange.settings")
settings.ROOT_URLCONF = "bench.pages_urls"

application = get_wsgi_application()
