from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from cqrs_common.web.health import healthz, readyz

urlpatterns = [
    path("healthz", healthz),
    path("readyz", readyz),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("read_service.queries.urls")),
    path("api/reports/", include("read_service.reporting.urls")),
    path("lab", RedirectView.as_view(url="/lab/")),
    path("lab/", include("read_service.lab_view.urls")),
    path("", include("django_prometheus.urls")),
]

handler404 = "cqrs_common.web.problems.not_found"
handler500 = "cqrs_common.web.problems.server_error"
