"""Which secrets in use are development ones (cqrs_common.development_secrets): the decision alone; the
refusal of real processes is tests/e2e/test_e2e_development_secrets.py."""

from __future__ import annotations

from cqrs_common import config
from cqrs_common.development_secrets import secrets_in_use, url_password

WRITE_DB = config.DEFAULT_WRITE_DATABASE_URL


def test_a_url_password_is_read_decoded() -> None:
    assert url_password("postgres://u:p%40ss@h:5432/d") == "p@ss"
    assert url_password("postgres://u@h/d") is None


def test_the_default_password_counts_whatever_the_host() -> None:
    compose_url = "postgres://cqrs_write:cqrs_write@write-db:5432/cqrs_write"
    found = secrets_in_use(
        secret_key="real", urls={"WRITE_DATABASE_URL": (url_password(compose_url), WRITE_DB)}
    )
    assert found == ["WRITE_DATABASE_URL"]


def test_a_url_without_a_password_is_not_a_development_one() -> None:
    assert secrets_in_use(secret_key="real", urls={"WRITE_DATABASE_URL": (None, WRITE_DB)}) == []


def test_dev_token_counts_among_other_tokens() -> None:
    assert secrets_in_use(secret_key="real", urls={}, api_tokens={"a-real-one", "dev-token"}) == [
        "CQRS_API_TOKENS"
    ]
    assert secrets_in_use(secret_key="real", urls={}, api_tokens={"a-real-one"}) == []


def test_both_published_secret_keys_count() -> None:
    for key in ("dev-only-insecure-secret-key", "dev-only-insecure-secret-key-change-me"):
        assert secrets_in_use(secret_key=key, urls={}) == ["DJANGO_SECRET_KEY"]
