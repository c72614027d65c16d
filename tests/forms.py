"""Reading a page's form as a browser would submit it."""

from __future__ import annotations

from html.parser import HTMLParser


class _FormValues(HTMLParser):
    """What a browser submits from a page's POST form when nothing is edited:
    its inputs (hidden ones included), ticked boxes, textareas and the
    chosen options; no files."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._in_form = False
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (attrs.get("method") or "").lower() == "post":
            self._in_form = True
        if not self._in_form or (not attrs.get("name") and tag != "option"):
            return
        kind = (attrs.get("type") or "text").lower()
        if tag == "input" and kind not in ("file", "submit", "button"):
            if kind not in ("checkbox", "radio"):
                self.values[attrs["name"]] = attrs.get("value") or ""
            elif "checked" in attrs:
                self.values[attrs["name"]] = attrs.get("value") or "on"
        elif tag == "textarea":
            self._textarea = attrs["name"]
            self.values[self._textarea] = ""
        elif tag == "select":
            self._select = attrs["name"]
        elif tag == "option" and self._select and "selected" in attrs:
            self.values[self._select] = attrs.get("value", "")

    def handle_data(self, data):
        if self._textarea:
            # A browser drops the newline that starts a textarea's content.
            text = self.values[self._textarea] + data
            self.values[self._textarea] = text.removeprefix("\n")

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "textarea":
            self._textarea = None
        elif tag == "select":
            self._select = None


def form_values(response) -> dict[str, str]:
    """The values the admin page in ``response`` posts back unedited."""
    assert response.status_code == 200
    parser = _FormValues()
    parser.feed(response.content.decode())
    return parser.values
