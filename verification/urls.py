from django.urls import path

from verification import views

app_name = "verification"

# The staff view of a document is mounted in the admin (verification.admin),
# behind its staff and second-factor checks.
urlpatterns = [
    path("", views.verification_page, name="page"),
]
