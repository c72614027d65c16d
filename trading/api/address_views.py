"""The address book over the API: ``/api/v1/addresses/``.

Listing needs the ``read`` scope; saving and removing need ``withdraw``, as
the book decides where withdrawals may go, and from a browser session a
recent password confirmation, like a withdrawal. Turning "only saved
addresses" on or off is left to the wallet page.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from tokens.models import Token
from trading.api import serializers as api
from trading.api.views import PrivateView, _errors, _session_reauthenticated, _valid
from trading.models import ApiKey, SavedAddress
from trading.notices import saved_address_notice
from trading.selectors import saved_addresses_for_user
from trading.services import (
    MAX_SAVED_ADDRESSES,
    saved_address_add,
    saved_address_remove,
)


class SavedAddressListView(PrivateView):
    write_scope = ApiKey.Scope.WITHDRAW

    @extend_schema(
        tags=["withdrawals"],
        summary="Your saved withdrawal addresses",
        responses={200: api.SavedAddressSerializer(many=True), **_errors(401, 403)},
    )
    def get(self, request: Request) -> Response:
        saved = saved_addresses_for_user(user=request.user)
        return Response(api.SavedAddressSerializer(saved, many=True).data)

    @extend_schema(
        tags=["withdrawals"],
        summary="Save a withdrawal address",
        description="The address must fit the token's address formats, and a "
        "`memo` one of the networks it fits (400 `invalid_memo`). It is "
        "usable for withdrawals under the saved-addresses-only setting from "
        "`usable_from` on (24 hours later by default). A token that is not "
        "listed now is refused with 409 `token_not_listed`, an address already "
        "in the book with the same memo with 409 `address_already_saved`, and "
        "any address once "
        f"the book holds {MAX_SAVED_ADDRESSES} with 422 `address_not_allowed`.",
        request=api.SavedAddressCreateSerializer,
        responses={
            201: api.SavedAddressSerializer,
            **_errors(400, 401, 403, 409, 422),
        },
    )
    def post(self, request: Request) -> Response:
        if request.auth is None:  # a browser's session, not an API key
            _session_reauthenticated(request)
        data = _valid(api.SavedAddressCreateSerializer, request.data)
        token = Token.objects.filter(symbol=data["token"].upper()).first()
        if token is None:
            raise exceptions.ValidationError(
                {"token": [f"There is no token {data['token']!r}."]}
            )
        saved = saved_address_add(
            user=request.user,
            token=token,
            address=data["address"],
            label=data["label"],
            memo=data.get("memo", ""),
        )
        saved_address_notice(request=request, saved_address=saved, added=True)
        return Response(
            api.SavedAddressSerializer(saved).data, status=status.HTTP_201_CREATED
        )


class SavedAddressDetailView(PrivateView):
    write_scope = ApiKey.Scope.WITHDRAW

    @extend_schema(
        tags=["withdrawals"],
        summary="Remove a saved withdrawal address",
        responses={204: None, **_errors(401, 403, 404)},
    )
    def delete(self, request: Request, pk: int) -> Response:
        if request.auth is None:
            _session_reauthenticated(request)
        saved = get_object_or_404(
            SavedAddress.objects.select_related("token"), pk=pk, user=request.user
        )
        saved_address_remove(user=request.user, saved_address=saved)
        saved_address_notice(request=request, saved_address=saved, added=False)
        return Response(status=status.HTTP_204_NO_CONTENT)
