"""Every URL of read-service: the queries (CONTRACT.md, "Read API"), health, the schema and /metrics; the
reports' and the live view's apps under /api/reports/ and /lab/."""

from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from cqrs_common.web.health import healthz, readyz
from read_service.queries.views import (
    AccountDetailApi,
    AccountListApi,
    AccountTransactionsApi,
    ProjectionApi,
    StatsApi,
)

urlpatterns = [
    path("healthz", healthz),
    path("readyz", readyz),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/accounts", AccountListApi.as_view(), name="account-list"),
    path("api/accounts/<uuid:account_id>", AccountDetailApi.as_view(), name="account-detail"),
    path(
        "api/accounts/<uuid:account_id>/transactions",
        AccountTransactionsApi.as_view(),
        name="account-transactions",
    ),
    path("api/stats", StatsApi.as_view(), name="stats"),
    path("api/projection", ProjectionApi.as_view(), name="projection"),
    path("api/reports/", include("read_service.reporting.urls")),
    path("lab", RedirectView.as_view(url="/lab/")),
    path("lab/", include("read_service.lab_view.urls")),
    path("", include("django_prometheus.urls")),
]

handler404 = "cqrs_common.web.problems.not_found"
handler500 = "cqrs_common.web.problems.server_error"
