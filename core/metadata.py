"""The API's answer to OPTIONS (settings.REST_FRAMEWORK["DEFAULT_METADATA_CLASS"])."""

from __future__ import annotations

from rest_framework.metadata import SimpleMetadata


class ApiMetadata(SimpleMetadata):
    """DRF's OPTIONS answer (name, description, what it renders and parses)
    without DRF's description of the POST and PUT bodies.

    DRF builds that from the view's ``serializer_class``; the API's views
    name a serializer per method instead (``extend_schema``), so DRF's
    default failed with a 500 for anyone allowed to POST. The bodies are
    described where clients read them: the OpenAPI schema at /api/schema/.
    """

    def determine_actions(self, request, view) -> dict:
        return {}
