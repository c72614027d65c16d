from django.urls import path

from tokens import views

app_name = "tokens"

urlpatterns = [
    path("", views.token_index, name="list"),
    path("<str:symbol>/", views.token_detail, name="detail"),
]
