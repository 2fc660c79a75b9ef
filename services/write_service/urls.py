"""Every URL of write-service: the commands (CONTRACT.md, "Write API"), health, the schema and /metrics."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from cqrs_common.web.health import healthz, readyz
from write_service.ledger.api.views import (
    AccountCloseApi,
    AccountDepositApi,
    AccountOpenApi,
    AccountWithdrawApi,
    TransferCreateApi,
)

urlpatterns = [
    path("healthz", healthz),
    path("readyz", readyz),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/accounts", AccountOpenApi.as_view(), name="account-open"),
    path("api/accounts/<uuid:account_id>/deposit", AccountDepositApi.as_view(), name="account-deposit"),
    path("api/accounts/<uuid:account_id>/withdraw", AccountWithdrawApi.as_view(), name="account-withdraw"),
    path("api/accounts/<uuid:account_id>/close", AccountCloseApi.as_view(), name="account-close"),
    path("api/transfers", TransferCreateApi.as_view(), name="transfer-create"),
    path("", include("django_prometheus.urls")),
]

handler400 = "cqrs_common.web.problems.bad_request"
handler404 = "cqrs_common.web.problems.not_found"
handler500 = "cqrs_common.web.problems.server_error"
