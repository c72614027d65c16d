"""A person-readable name for the browser behind a User-Agent header."""

import re


def device_describe(user_agent: str) -> str:
    """'Firefox on Windows', from a User-Agent header; 'Unknown device' when
    nothing is recognised, never the header itself: whoever signs in writes
    it, and it is shown in the owner's security notices."""
    browser = next(
        (name for pattern, name in _BROWSERS if re.search(pattern, user_agent)), None
    )
    system = next(
        (name for pattern, name in _SYSTEMS if re.search(pattern, user_agent)), None
    )
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown device"


# First match wins: Edge and Opera also say Chrome, Chrome also says Safari.
_BROWSERS = [
    (r"Edg/", "Edge"),
    (r"OPR/|Opera", "Opera"),
    (r"Firefox/", "Firefox"),
    (r"HeadlessChrome/", "Headless Chrome"),
    (r"Chrome/|Chromium/", "Chrome"),
    (r"Safari/", "Safari"),
    (r"^python-requests/|^python-httpx/|^Python-urllib/", "Python script"),
    (r"^curl/", "curl"),
]
_SYSTEMS = [
    (r"Android", "Android"),
    (r"iPhone|iPad", "iOS"),
    (r"Windows", "Windows"),
    (r"Mac OS X|Macintosh", "macOS"),
    (r"CrOS", "ChromeOS"),
    (r"Linux", "Linux"),
]
