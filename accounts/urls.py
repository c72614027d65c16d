from django.urls import path

from accounts import views

app_name = "accounts"

# Log-in, e-mail, password, second factor and sessions are django-allauth's,
# mounted under the same /accounts/ (crypto_exchange/urls.py); sign-up is too,
# in a transaction (views.SignupView), and the e-mail page, saying when a link
# is not sent again (views.EmailView): both found here first.
urlpatterns = [
    path("signup/", views.SignupView.as_view(), name="signup"),
    path("email/", views.EmailView.as_view(), name="email"),
    path("profile/", views.profile, name="profile"),
    path("profile/avatar/remove/", views.avatar_delete, name="avatar_remove"),
    path("profile/sessions/<int:pk>/end/", views.session_end, name="session_end"),
    path(
        "profile/sessions/end-others/",
        views.sessions_end_others_view,
        name="sessions_end_others",
    ),
]
