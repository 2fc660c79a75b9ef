from django.urls import path

from read_service.lab_view.views import lab_page, pipeline

urlpatterns = [
    path("", lab_page, name="lab"),
    path("api/pipeline", pipeline, name="lab-pipeline"),
]
