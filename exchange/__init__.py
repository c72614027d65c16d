"""The exchange as a whole: pages and commands that bring the other apps
together (the home page, ``/healthz/`` and ``/readyz/``, ``seed_demo``). It
depends on every app and none depends on it, so the apps themselves never
import each other both ways."""
