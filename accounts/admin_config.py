from django.contrib.admin.apps import AdminConfig


class SecureAdminConfig(AdminConfig):
    """The admin, entered only through the site's log-in and only by staff
    with a second factor (``accounts.admin_site``)."""

    default_site = "accounts.admin_site.SecureAdminSite"
