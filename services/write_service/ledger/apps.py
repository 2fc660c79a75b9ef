from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "write_service.ledger"
    label = "ledger"
