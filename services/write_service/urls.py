from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from cqrs_common.web.health import healthz, readyz

urlpatterns = [
    path("healthz", healthz),
    path("readyz", readyz),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("write_service.ledger.api.urls")),
    path("", include("django_prometheus.urls")),
]

handler400 = "cqrs_common.web.problems.bad_request"
handler404 = "cqrs_common.web.problems.not_found"
handler500 = "cqrs_common.web.problems.server_error"
