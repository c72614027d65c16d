from django.urls import path

from trading import exports, views

app_name = "trading"

urlpatterns = [
    path("markets/", views.market_list, name="markets"),
    path("markets/<str:symbol>/", views.market_detail, name="market"),
    path("markets/<str:symbol>/orders/", views.order_create, name="order_create"),
    path(
        "markets/<str:symbol>/orders/<int:order_id>/cancel/",
        views.order_cancel_view,
        name="order_cancel",
    ),
    path("wallet/", views.wallet, name="wallet"),
    path("wallet/addresses/", views.saved_address_create, name="address_create"),
    path(
        "wallet/addresses/<int:saved_address_id>/delete/",
        views.saved_address_delete,
        name="address_delete",
    ),
    path(
        "wallet/addresses/setting/",
        views.withdrawal_address_policy_update,
        name="address_policy",
    ),
    path(
        "wallet/withdrawals/<int:withdrawal_id>/cancel/",
        views.withdrawal_cancel_view,
        name="withdrawal_cancel",
    ),
    path("wallet/exports/<slug:kind>.csv", exports.export_csv, name="export"),
]
