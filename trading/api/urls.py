from csp.decorators import csp_update
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from trading.api import address_views, key_views, stream, views

app_name = "api"

v1 = [
    path("markets/", views.MarketListView.as_view(), name="markets"),
    path("markets/<str:symbol>/ticker/", views.TickerView.as_view(), name="ticker"),
    path("markets/<str:symbol>/depth/", views.DepthView.as_view(), name="depth"),
    path("markets/<str:symbol>/trades/", views.TradeListView.as_view(), name="trades"),
    # Server-Sent Events, served by the ASGI process (trading/api/stream.py).
    path(
        "markets/<str:symbol>/stream/",
        stream.market_stream_view,
        name="market_stream",
    ),
    path(
        "markets/<str:symbol>/candles/",
        views.CandleListView.as_view(),
        name="candles",
    ),
    path("balances/", views.BalanceListView.as_view(), name="balances"),
    path("orders/", views.OrderListView.as_view(), name="orders"),
    path("orders/cancel-all/", views.CancelAllView.as_view(), name="orders_cancel_all"),
    path("orders/<int:pk>/", views.OrderDetailView.as_view(), name="order"),
    path("fills/", views.FillListView.as_view(), name="fills"),
    path("withdrawals/", views.WithdrawalListView.as_view(), name="withdrawals"),
    path(
        "withdrawals/<int:pk>/",
        views.WithdrawalDetailView.as_view(),
        name="withdrawal",
    ),
    path("addresses/", address_views.SavedAddressListView.as_view(), name="addresses"),
    path(
        "addresses/<int:pk>/",
        address_views.SavedAddressDetailView.as_view(),
        name="address",
    ),
    re_path(r"^.*$", views.NotFoundView.as_view()),
]

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI under the site's Content-Security-Policy: its start-up script
    # is fetched from docs/?script (the split view), its inline style moved to
    # a file (our template); its stylesheet draws icons from data: URLs.
    path(
        "docs/",
        csp_update({"img-src": ["data:"]})(
            SpectacularSwaggerSplitView.as_view(
                url_name="api:schema", template_name="trading/api_docs.html"
            )
        ),
        name="docs",
    ),
    path("v1/", include(v1)),
    path("keys/create/", key_views.api_key_create_view, name="key_create"),
    path("keys/<int:pk>/revoke/", key_views.api_key_revoke_view, name="key_revoke"),
    path(
        "keys/revoke-all/", key_views.api_keys_revoke_all_view, name="keys_revoke_all"
    ),
]
