from django.apps import AppConfig


class ReportingConfig(AppConfig):
    name = "read_service.reporting"
    label = "reporting"
