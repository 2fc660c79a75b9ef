from django.urls import path

from write_service.ledger.api.views import (
    AccountCloseApi,
    AccountDepositApi,
    AccountOpenApi,
    AccountWithdrawApi,
    TransferCreateApi,
)

urlpatterns = [
    path("accounts", AccountOpenApi.as_view(), name="account-open"),
    path("accounts/<uuid:account_id>/deposit", AccountDepositApi.as_view(), name="account-deposit"),
    path("accounts/<uuid:account_id>/withdraw", AccountWithdrawApi.as_view(), name="account-withdraw"),
    path("accounts/<uuid:account_id>/close", AccountCloseApi.as_view(), name="account-close"),
    path("transfers", TransferCreateApi.as_view(), name="transfer-create"),
]
