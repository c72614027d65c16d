from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Answers only when settings.MEDIA_SERVE is on (development, MinIO proxy).
    path("media/", include("storage.urls")),
]
