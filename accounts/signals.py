from accounts.models import Profile


def profile_create_for_new_user(sender, instance, created: bool, raw: bool, **kwargs):
    # Every user has a profile, however the user was made (sign-up, admin,
    # createsuperuser, a script); fixtures (raw) bring their own rows.
    if created and not raw:
        Profile.objects.get_or_create(user=instance)
