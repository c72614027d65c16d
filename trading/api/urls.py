from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from trading.api import key_views, views

app_name = "api"

v1 = [
    path("markets/", views.MarketListView.as_view(), name="markets"),
    path("markets/<str:symbol>/ticker/", views.TickerView.as_view(), name="ticker"),
    path("markets/<str:symbol>/depth/", views.DepthView.as_view(), name="depth"),
    path("markets/<str:symbol>/trades/", views.TradeListView.as_view(), name="trades"),
    path(
        "markets/<str:symbol>/candles/",
        views.CandleListView.as_view(),
        name="candles",
    ),
    path("balances/", views.BalanceListView.as_view(), name="balances"),
    path("orders/", views.OrderListView.as_view(), name="orders"),
    path("orders/<int:pk>/", views.OrderDetailView.as_view(), name="order"),
    path("fills/", views.FillListView.as_view(), name="fills"),
    path("withdrawals/", views.WithdrawalListView.as_view(), name="withdrawals"),
    re_path(r"^.*$", views.NotFoundView.as_view()),
]

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("v1/", include(v1)),
    path("keys/create/", key_views.api_key_create_view, name="key_create"),
    path("keys/<int:pk>/revoke/", key_views.api_key_revoke_view, name="key_revoke"),
]
