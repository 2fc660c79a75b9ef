"""The REST calls a client makes against a running system, natively (tests/e2e, the lab) or in containers
(tests/compose): whatever runs it, a system whose write-service answers at `write_api` and read-service at
`read_api`, accepting the bearer `token`, is driven the same way."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import requests


class UnexpectedAnswer(AssertionError):
    """An API answered with another status than the call needs (an AssertionError: in a test, a failure)."""


class ApiClient:
    """Mixed into what knows a system's addresses (the tiers' System, the lab's Lab); each call is made on
    the caller's session, so concurrent clients keep their own connections."""

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

    def opened(
        self, session: requests.Session, owner: str = "e2e", deposit: str | None = None
    ) -> tuple[UUID, int]:
        """Opens an account (and deposits `deposit` into it); returns its id and its version after that."""
        response = _expect(self.command(session, "/api/accounts", {"owner": owner, "currency": "EUR"}), 201)
        account_id, version = UUID(response.json()["account_id"]), response.json()["version"]
        if deposit is not None:
            path = f"/api/accounts/{account_id}/deposit"
            version = _expect(self.command(session, path, {"amount": deposit}), 200).json()["version"]
        return account_id, version

    def open_account(self, session: requests.Session, owner: str = "e2e", deposit: str | None = None) -> UUID:
        return self.opened(session, owner, deposit)[0]

    def read_account(self, session: requests.Session, account_id: UUID, **params: Any) -> requests.Response:
        return session.get(f"{self.read_api}/api/accounts/{account_id}", params=params, timeout=40)

    def statement(self, session: requests.Session, account_id: UUID) -> list[dict[str, Any]]:
        """Every line of an account's statement, following the pages."""
        rows: list[dict[str, Any]] = []
        url: str | None = f"{self.read_api}/api/accounts/{account_id}/transactions"
        while url:
            page = _expect(session.get(url, timeout=10), 200)
            rows += page.json()["results"]
            url = page.json()["next"]
        return rows

    def projection(self, session: requests.Session) -> dict[str, Any]:
        return _expect(session.get(f"{self.read_api}/api/projection", timeout=10), 200).json()


def _expect(response: requests.Response, status: int) -> requests.Response:
    if response.status_code != status:
        raise UnexpectedAnswer(
            f"{response.request.method} {response.url}: {response.status_code}, not {status}: {response.text}"
        )
    return response
