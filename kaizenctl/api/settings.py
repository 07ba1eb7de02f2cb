"""Connection settings: where the server is and how to authenticate, from flags and environment.

Flags win over the environment. Every missing or contradictory setting is a
``UsageError`` that says what to set. Secrets are registered with
``kaizenctl.redact`` the moment they are read, and never appear in a repr.

Kept free of httpx so the CLI can import it cheaply.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from kaizenctl.errors import UsageError
from kaizenctl.redact import register_secret

ENV_API_URL = "KAIZEN_API_URL"
ENV_TOKEN = "KAIZEN_TOKEN"
ENV_REFRESH_TOKEN = "KAIZEN_REFRESH_TOKEN"
ENV_EMAIL = "KAIZEN_EMAIL"
ENV_PASSWORD = "KAIZEN_PASSWORD"
ENV_DIALECT = "KAIZEN_DIALECT"
ENV_WORKSPACE = "KAIZEN_WORKSPACE"

# Which API a server speaks: CONTRACT.md ("contract"), the shipped Kaizen Studio
# backend ("studio"), or "auto" (ask the server once; see kaizenctl.api.connect).
DIALECTS = ("contract", "studio", "auto")
DEFAULT_DIALECT = "auto"

# A ceiling: requests in flight start at 10 and adapt up to it (kaizenctl.api.concurrency).
DEFAULT_PARALLELISM = 64
DEFAULT_TIMEOUT = 30.0

CREDENTIALS_HINT = (
    f"set {ENV_TOKEN} (optionally with {ENV_REFRESH_TOKEN}), or {ENV_EMAIL} and {ENV_PASSWORD}"
)


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything needed to open an authenticated connection."""

    api_url: str
    token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    email: str | None = None
    password: str | None = field(default=None, repr=False)
    insecure: bool = False
    ca_bundle: str | None = None
    parallelism: int = DEFAULT_PARALLELISM
    timeout: float = DEFAULT_TIMEOUT
    # A library caller that builds settings itself speaks the contract unless it says so;
    # the command line (settings_from_env) defaults to auto.
    dialect: str = "contract"
    # The workspace everything is created in and read from, by name (studio dialect).
    workspace: str | None = None

    def __post_init__(self) -> None:
        for secret in (self.token, self.refresh_token, self.password):
            register_secret(secret)
        object.__setattr__(self, "api_url", check_api_url(self.api_url, insecure=self.insecure))
        if self.parallelism < 1:
            raise UsageError(f"--parallelism must be at least 1, not {self.parallelism}")
        if not self.timeout > 0:
            raise UsageError(f"--timeout must be more than 0 seconds, not {self.timeout}")
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise UsageError(f"--ca-bundle {self.ca_bundle}: no such file")
        if self.password and not self.email:
            raise UsageError(f"{ENV_PASSWORD} is set but {ENV_EMAIL} is not: set both")
        if self.email and not self.password:
            raise UsageError(f"{ENV_EMAIL} is set but {ENV_PASSWORD} is not: set both")
        if self.dialect not in DIALECTS:
            raise UsageError(
                f"--dialect / {ENV_DIALECT} {self.dialect!r} is not one of {', '.join(DIALECTS)}"
            )
        if self.workspace is not None and not self.workspace.strip():
            raise UsageError(f"--workspace / {ENV_WORKSPACE} must not be blank")

    @property
    def has_credentials(self) -> bool:
        return bool(self.email and self.password)

    def require_auth(self) -> None:
        """Raise unless there is some way to authenticate."""
        if not self.token and not self.has_credentials:
            raise UsageError(f"not logged in: {CREDENTIALS_HINT}")


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_url(url: str, *, insecure: bool) -> str:
    """The API URL without a trailing slash, or a ``UsageError`` saying what is wrong."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--api-url {url!r} is not an http(s) URL (for example https://kaizen.example.com)"
        )
    if parts.username or parts.password:
        # A URL is printed in logs and errors; credentials in it would leak.
        raise UsageError(f"--api-url must not carry credentials; {CREDENTIALS_HINT} instead")
    if parts.query or parts.fragment:
        raise UsageError(f"--api-url {url!r} must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not insecure:
        raise UsageError(
            f"refusing plain http to {parts.hostname}: tokens would cross the network "
            "unencrypted; use https, or pass --insecure if you accept that"
        )
    return url.rstrip("/")


def settings_from_env(
    *,
    api_url: str | None = None,
    insecure: bool = False,
    ca_bundle: str | None = None,
    parallelism: int = DEFAULT_PARALLELISM,
    timeout: float = DEFAULT_TIMEOUT,
    dialect: str | None = None,
    workspace: str | None = None,
    environ: Mapping[str, str] | None = None,
    require_auth: bool = True,
) -> ConnectionSettings:
    """Settings from flag values (None when not given) completed from the environment."""
    env = os.environ if environ is None else environ

    def read(name: str) -> str | None:
        value = env.get(name)
        return value if value else None

    url = api_url or read(ENV_API_URL)
    if not url:
        raise UsageError(f"no server given: pass --api-url or set {ENV_API_URL}")
    settings = ConnectionSettings(
        api_url=url,
        token=read(ENV_TOKEN),
        refresh_token=read(ENV_REFRESH_TOKEN),
        email=read(ENV_EMAIL),
        password=read(ENV_PASSWORD),
        insecure=insecure,
        ca_bundle=ca_bundle,
        parallelism=parallelism,
        timeout=timeout,
        dialect=dialect or read(ENV_DIALECT) or DEFAULT_DIALECT,
        workspace=workspace or read(ENV_WORKSPACE),
    )
    if require_auth:
        settings.require_auth()
    return settings
