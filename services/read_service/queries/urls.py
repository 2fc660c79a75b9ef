from django.urls import path

from read_service.queries.views import (
    AccountDetailApi,
    AccountListApi,
    AccountTransactionsApi,
    ProjectionApi,
    StatsApi,
)

urlpatterns = [
    path("accounts", AccountListApi.as_view(), name="account-list"),
    path("accounts/<uuid:account_id>", AccountDetailApi.as_view(), name="account-detail"),
    path(
        "accounts/<uuid:account_id>/transactions",
        AccountTransactionsApi.as_view(),
        name="account-transactions",
    ),
    path("stats", StatsApi.as_view(), name="stats"),
    path("projection", ProjectionApi.as_view(), name="projection"),
]
