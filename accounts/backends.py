"""An alias that keeps sessions signed in before 2026-12-05 valid.

Until then sessions recorded ``accounts.backends.SqlModelBackend`` as the
backend that signed them in, and Django signs out a session whose backend is
no longer in ``AUTHENTICATION_BACKENDS``. This one only loads the user of such
a session, exactly as Django's ``ModelBackend`` does (the session's password
hash is still checked by Django); it authenticates nobody and grants nothing.

It can go on 2027-01-05: sessions last two weeks (``SESSION_COOKIE_AGE``),
so by then every session it could read has expired. Remove it from
``AUTHENTICATION_BACKENDS`` at the same time.
"""

from django.contrib.auth.backends import BaseBackend, ModelBackend


class SqlModelBackend(BaseBackend):
    def get_user(self, user_id):
        return ModelBackend().get_user(user_id)
