"""Bearer tokens (CONTRACT.md: `Authorization: Bearer <token>`, tokens from `CQRS_API_TOKENS`)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request


@dataclass(frozen=True, slots=True)
class ApiClient:
    """Who sent a command: any holder of a configured token, known by the token's SHA-256 (`client_id`), so
    what is stored per client (its idempotency keys) never holds the token itself."""

    client_id: str
    is_authenticated = True


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiClient, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # IsAuthenticated then answers 401 with WWW-Authenticate
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("The Authorization header must be 'Bearer <token>'.")
        if not _is_known(token):
            raise AuthenticationFailed("The bearer token is not valid.")
        return ApiClient(client_id=client_id_of(token)), token

    def authenticate_header(self, request: Request) -> str:
        # Present on every 401 (RFC 6750); without it DRF would answer 403.
        return "Bearer"


def client_id_of(token: str) -> str:
    """The SHA-256 of a token, in hex: enough for long random tokens, which are not passwords."""
    return hashlib.sha256(token.encode()).hexdigest()


def _is_known(token: str) -> bool:
    # Constant-time comparison against every token, so timing tells nothing about a near miss.
    presented = token.encode()
    matches = [hmac.compare_digest(presented, known.encode()) for known in settings.API_TOKENS]
    return any(matches)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Documents the scheme in /api/schema."""

    target_class = "write_service.ledger.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}
