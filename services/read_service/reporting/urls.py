from django.urls import path

from read_service.reporting.api import DailyTotalsApi, SubscriptionApi

urlpatterns = [
    path("daily", DailyTotalsApi.as_view(), name="reports-daily"),
    path("subscription", SubscriptionApi.as_view(), name="reports-subscription"),
]
