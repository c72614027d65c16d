from django.utils.html import format_html
from django.utils.safestring import SafeString


def image_tag(url: str, *, alt: str, size: int) -> SafeString:
    """A square <img> for a stored picture; width and height avoid reflow."""
    return format_html(
        '<img src="{}" alt="{}" width="{}" height="{}" loading="lazy">',
        url,
        alt,
        size,
        size,
    )
