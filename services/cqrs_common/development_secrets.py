"""Refusing to run on development secrets outside development.

Every secret has a development default (cqrs_common.config) so that `make run` works on a fresh clone; those
values are public. A process whose DJANGO_DEBUG is off and that still uses one of them (the Django secret
key, the `dev-token` API token, a database or broker password of the default URLs) refuses to start, naming
the variables, unless ALLOW_DEVELOPMENT_SECRETS=true says that this is a development machine after all; then
it starts and says once which development secrets it uses.

The check runs at the end of each service's settings module: every process (gunicorn workers, the relay, the
projector, every management command) loads its settings before it does anything, and nothing loads them
twice, so it cannot be skipped and costs requests nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

from cqrs_common import config
from cqrs_common.logging import get_logger

log = get_logger(__name__)


class DevelopmentSecretsRefused(RuntimeError):
    """Deliberately not ImproperlyConfigured: Django's command line would swallow that one and fail later
    with a misleading "Unknown command"."""


def url_password(url: str) -> str | None:
    password = urlsplit(url).password
    return unquote(password) if password is not None else None


def secrets_in_use(
    *,
    secret_key: str,
    urls: Mapping[str, tuple[str | None, str | tuple[str, ...]]],
    api_tokens: Iterable[str] = (),
) -> list[str]:
    """The variables whose value in use is a development one.

    `urls` maps a URL variable to (the password in use, the variable's development default URL, or several
    when processes of one codebase use it with different users): the URL is a development one when its
    password is a default's, whatever its host.
    """
    found = []
    if secret_key in config.DEVELOPMENT_SECRET_KEYS:
        found.append("DJANGO_SECRET_KEY")
    if config.DEFAULT_API_TOKEN in set(api_tokens):
        found.append("CQRS_API_TOKENS")
    for variable, (password, defaults) in urls.items():
        default_urls = (defaults,) if isinstance(defaults, str) else defaults
        if password is not None and password in {url_password(url) for url in default_urls}:
            found.append(variable)
    return found


def refuse_unless_allowed(in_use: list[str], *, debug: bool) -> None:
    """Raises DevelopmentSecretsRefused when `in_use` is not empty, DEBUG is off and nobody opted in."""
    if not in_use or debug:
        return
    names = ", ".join(in_use)
    if config.allow_development_secrets():
        log.warning(
            "development_secrets_in_use",
            variables=in_use,
            detail=f"ALLOW_DEVELOPMENT_SECRETS=true: running with the development values of {names}",
        )
        return
    detail = (
        f"{names} still hold their public development values while DJANGO_DEBUG is off. Set real secrets in "
        "these variables, or ALLOW_DEVELOPMENT_SECRETS=true on a development machine."
    )
    log.error("development_secrets_refused", variables=in_use, detail=detail)
    raise DevelopmentSecretsRefused(f"refusing to start: {detail}")
