from django.apps import AppConfig


class LabViewConfig(AppConfig):
    name = "read_service.lab_view"
    label = "lab_view"
