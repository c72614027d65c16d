from django import template

from verification.selectors import verification_latest

register = template.Library()


@register.inclusion_tag("verification/partials/state.html", takes_context=True)
def verification_state(context) -> dict:
    """The signed-in user's verification state, with a link to the page."""
    return {"verification": verification_latest(user=context["request"].user)}
