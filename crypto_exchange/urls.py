from django.contrib import admin
from django.urls import include, path

from storage.health import Readiness, liveness
from tokens.views import home

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
