from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from cqrs_common.web.health import healthz, readyz

urlpatterns = [
    path("healthz", healthz),
    path("readyz", readyz),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("", include("django_prometheus.urls")),
]
