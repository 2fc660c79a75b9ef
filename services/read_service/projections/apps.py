from django.apps import AppConfig


class ProjectionsConfig(AppConfig):
    name = "read_service.projections"
    label = "projections"
