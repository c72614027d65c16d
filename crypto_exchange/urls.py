from django.contrib import admin
from django.urls import include, path

from exchange.health import Readiness, liveness
from exchange.views import home

# admin.site is accounts.admin_site.SecureAdminSite: the site's own log-in,
# and staff need a second factor.

urlpatterns = [
    path("", home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
    path("accounts/verification/", include("verification.urls")),
    path("tokens/", include("tokens.urls")),
    path("api/", include("trading.api.urls")),
    path("", include("trading.urls")),
    path("admin/", admin.site.urls),
    path("healthz/", liveness, name="healthz"),
    path("readyz/", Readiness.as_view(), name="readyz"),
    # Answers only when settings.MEDIA_SERVE is on (development, MinIO proxy).
    path("media/", include("storage.urls")),
]

# Django's own errors (an unknown URL, a body too large, an uncaught
# exception): JSON in the API's shape under /api/, the site's pages elsewhere.
handler400 = "core.errors.bad_request"
handler403 = "core.errors.permission_denied"
handler404 = "core.errors.page_not_found"
handler500 = "core.errors.server_error"
