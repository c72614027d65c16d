from django.urls import path

from trading import views

app_name = "trading"

urlpatterns = [
    path("markets/", views.market_list, name="markets"),
    path("markets/<str:symbol>/", views.market_detail, name="market"),
    path("markets/<str:symbol>/live/", views.market_live, name="market_live"),
    path("markets/<str:symbol>/orders/", views.order_create, name="order_create"),
    path(
        "markets/<str:symbol>/orders/<int:order_id>/cancel/",
        views.order_cancel_view,
        name="order_cancel",
    ),
    path("wallet/", views.wallet, name="wallet"),
]
