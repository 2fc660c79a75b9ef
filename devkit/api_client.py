"""The REST calls the system tiers make against a running system, natively (tests/e2e) or in containers
(tests/compose): whatever runs it, a system whose write-service answers at `write_api` and read-service at
`read_api`, accepting the bearer `token`, is driven the same way."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import requests


class ApiClient:
    write_api: str
    read_api: str
    token: str

    def command(
        self, session: requests.Session, path: str, body: dict[str, Any], **headers: str
    ) -> requests.Response:
        return session.post(
            f"{self.write_api}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}", **headers},
            timeout=30,
        )

    def open_account(self, session: requests.Session, owner: str = "e2e", deposit: str | None = None) -> UUID:
        response = self.command(session, "/api/accounts", {"owner": owner, "currency": "EUR"})
        assert response.status_code == 201, response.text
        account_id = UUID(response.json()["account_id"])
        if deposit is not None:
            deposited = self.command(session, f"/api/accounts/{account_id}/deposit", {"amount": deposit})
            assert deposited.status_code == 200, deposited.text
        return account_id

    def read_account(self, session: requests.Session, account_id: UUID, **params: Any) -> requests.Response:
        return session.get(f"{self.read_api}/api/accounts/{account_id}", params=params, timeout=40)

    def statement(self, session: requests.Session, account_id: UUID) -> list[dict[str, Any]]:
        """Every line of an account's statement, following the pages."""
        rows: list[dict[str, Any]] = []
        url: str | None = f"{self.read_api}/api/accounts/{account_id}/transactions"
        while url:
            page = session.get(url, timeout=10)
            assert page.status_code == 200, page.text
            rows += page.json()["results"]
            url = page.json()["next"]
        return rows

    def projection(self, session: requests.Session) -> dict[str, Any]:
        response = session.get(f"{self.read_api}/api/projection", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()
