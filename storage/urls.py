from django.urls import path

from storage import views

app_name = "storage"

urlpatterns = [
    path("<path:path>", views.media_serve, name="media"),
]
