"""The client of a remote provider, for resource servers in remote mode (``CELLS_OIDC_RESOURCE_ISSUER``).

- :class:`RemoteProvider`: the issuer's discovery document (OpenID Connect Discovery §4) and
  signing keys (its JWKS, RFC 7517), cached in the process with a TTL and a bounded refresh;
- :func:`introspect`: the provider's RFC 7662 introspection endpoint, with a short cache;
- :func:`fetch_json`: every HTTP call, bounded in time and size, never following redirects.

:mod:`cells_oidc.internal.resource` decides when to use them.
"""

from __future__ import annotations

import base64
import logging
import math
import threading
import time
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from cells_oidc.conf import app_settings
from cells_oidc.internal import jsontext, revocation
from cells_oidc.internal.jws import (
    MAX_KID_LENGTH,
    InvalidToken,
    PublicKey,
    algorithm_for_key,
    numeric_date,
    public_key_from_jwk,
)
from cells_oidc.models import checksum

__all__ = [
    "RemoteError",
    "RemoteProvider",
    "clear_remote_cache",
    "fetch_json",
    "introspect",
    "introspection_configured",
    "remote_provider",
]

logger = logging.getLogger(__name__)


class RemoteError(Exception):
    """A remote provider could not be reached or answered something unusable."""


def _session() -> requests.Session:
    session = requests.Session()
    session.headers.update(
        {"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": "cells-oidc-resource"}
    )
    return session


def check_url(url: object, *, issuer: str) -> str:
    """An endpoint URL from discovery: absolute http(s), and https unless the issuer itself is http."""
    if not isinstance(url, str) or len(url) > 2048:
        raise RemoteError("endpoint URL missing")
    parts = urlsplit(url)
    issuer_scheme = urlsplit(issuer).scheme
    allowed = {"https"} if issuer_scheme == "https" else {"https", "http"}
    if parts.scheme not in allowed or not parts.netloc or parts.username or parts.password:
        raise RemoteError("endpoint URL not allowed")
    return url


def fetch_json(
    method: str, url: str, *, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """One bounded HTTP call to a remote provider: a deadline, a size limit, no redirects."""
    timeout = app_settings.RESOURCE_HTTP_TIMEOUT
    limit = app_settings.RESOURCE_HTTP_MAX_BYTES
    deadline = time.monotonic() + timeout
    try:
        with (
            _session() as session,
            session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            ) as response,
        ):
            if response.status_code != 200:
                raise RemoteError(f"{url} answered {response.status_code}")
            # We ask for an uncompressed body: a compressed one could inflate far beyond the limit.
            if response.headers.get("Content-Encoding", "identity").strip().lower() not in ("identity", ""):
                raise RemoteError(f"{url}: compressed response")
            declared = response.headers.get("Content-Length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                raise RemoteError(f"{url}: response too large")
            body = bytearray()
            for chunk in response.iter_content(8192):
                body += chunk
                if len(body) > limit:
                    raise RemoteError(f"{url}: response too large")
                if time.monotonic() > deadline:
                    raise RemoteError(f"{url}: too slow")
    except requests.RequestException as exc:
        raise RemoteError(f"{url}: {type(exc).__name__}") from exc
    try:
        value = jsontext.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RemoteError(f"{url}: not JSON") from exc
    if not isinstance(value, dict):
        raise RemoteError(f"{url}: not a JSON object")
    return value


class RemoteProvider:
    """Discovery metadata and signing keys of one remote issuer, cached in this process.

    The keys are used for ``CELLS_OIDC_RESOURCE_JWKS_CACHE_SECONDS``; a ``kid`` that is not among
    them (a rotation) fetches them again, but never more than once per
    ``CELLS_OIDC_RESOURCE_JWKS_MIN_REFRESH_SECONDS``, so that tokens with made-up ``kid`` values
    cannot make this process hammer the provider. When a fetch fails, the keys fetched before
    stay in use.
    """

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._lock = threading.Lock()
        self._keys: dict[str, PublicKey] = {}
        self._metadata: dict[str, Any] = {}
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        #: Number of fetches of the key set (for monitoring).
        self.fetches = 0

    def algorithms(self) -> frozenset[str]:
        """The algorithms of the keys the provider publishes now (RS256, ES256, EdDSA): the only
        ones accepted, each key with its own (RFC 8725 §3.1)."""
        return frozenset(filter(None, (algorithm_for_key(key) for key in self._keys.values())))

    def key_for(self, kid: str) -> PublicKey | None:
        keys = self._keys
        if kid in keys and time.monotonic() - self._fetched_at < app_settings.RESOURCE_JWKS_CACHE_SECONDS:
            return keys[kid]
        with self._lock:
            now = time.monotonic()
            stale = now - self._fetched_at >= app_settings.RESOURCE_JWKS_CACHE_SECONDS
            may_fetch = now - self._attempted_at >= app_settings.RESOURCE_JWKS_MIN_REFRESH_SECONDS
            if (stale or kid not in self._keys) and may_fetch:
                self._refresh(now)
            return self._keys.get(kid)

    def metadata(self) -> dict[str, Any]:
        """The discovery document (fetched with the keys when never fetched yet)."""
        if not self._metadata:
            with self._lock:
                now = time.monotonic()
                if (
                    not self._metadata
                    and now - self._attempted_at >= app_settings.RESOURCE_JWKS_MIN_REFRESH_SECONDS
                ):
                    self._refresh(now)
        return self._metadata

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        try:
            metadata = self._discover()
            jwks_uri = check_url(metadata.get("jwks_uri"), issuer=self.issuer)
            self.fetches += 1
            key_set = fetch_json("GET", jwks_uri)
        except RemoteError as exc:
            logger.warning("Could not refresh the keys of %s: %s", self.issuer, exc)
            return
        # RFC 7517 §5: keys of a type or algorithm we do not verify are skipped, not fatal.
        keys: dict[str, PublicKey] = {}
        entries = key_set.get("keys")
        for entry in entries[:64] if isinstance(entries, list) else []:
            kid = entry.get("kid") if isinstance(entry, dict) else None
            public = public_key_from_jwk(entry)
            if isinstance(kid, str) and kid and len(kid) <= MAX_KID_LENGTH and public is not None:
                keys[kid] = public
        if not keys:
            logger.warning("The JWKS of %s has no usable RS256, ES256 or EdDSA key.", self.issuer)
            return
        self._metadata = metadata
        self._keys = keys
        self._fetched_at = time.monotonic()

    def _discover(self) -> dict[str, Any]:
        # OpenID Connect Discovery §4.1: the issuer without its trailing slash, plus the path.
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        metadata = fetch_json("GET", url)
        # OpenID Connect Discovery §4.3: the issuer in the document MUST be identical to the one
        # used to find it, or an attacker-controlled document could name another issuer.
        if metadata.get("issuer") != self.issuer:
            raise RemoteError(f"{url} names another issuer")
        return metadata


_remote_providers: dict[str, RemoteProvider] = {}
_remote_lock = threading.Lock()


def remote_provider(issuer: str) -> RemoteProvider:
    """The process-wide :class:`RemoteProvider` of ``issuer``."""
    with _remote_lock:
        provider = _remote_providers.get(issuer)
        if provider is None:
            if urlsplit(issuer).scheme not in ("https", "http"):
                raise InvalidToken("issuer misconfigured")
            provider = _remote_providers[issuer] = RemoteProvider(issuer)
        return provider


def clear_remote_cache(**kwargs: Any) -> None:
    """Forget every remote provider's metadata and keys (``setting_changed`` receiver, tests)."""
    setting = kwargs.get("setting")
    if setting is None or str(setting).startswith("CELLS_OIDC_RESOURCE_"):
        with _remote_lock:
            _remote_providers.clear()


def introspection_configured() -> bool:
    """Whether the introspection client has credentials (``CELLS_OIDC_RESOURCE_INTROSPECTION_CLIENT_*``)."""
    return bool(
        app_settings.RESOURCE_INTROSPECTION_CLIENT_ID and app_settings.RESOURCE_INTROSPECTION_CLIENT_SECRET
    )


def introspect(token: str, provider: RemoteProvider, *, expires_at: int | None) -> dict[str, Any] | None:
    """The RFC 7662 answer for ``token`` when it is active, else ``None``; cached briefly.

    An "active" answer is reused for ``CELLS_OIDC_RESOURCE_INTROSPECTION_CACHE_SECONDS`` (the
    bound on how late a revocation is noticed, RFC 7662 §4); an inactive JWT goes on the
    deny-list until it expires. When the provider cannot be asked, the token is refused.
    """
    cache = revocation.revocation_cache()
    key = f"cells_oidc:introspection:{checksum(token)}"
    try:
        cached = cache.get(key)
    except Exception:  # noqa: BLE001 - a cache outage must refuse, not crash
        logger.exception("The introspection cache is unavailable.")
        raise InvalidToken("revocation status unavailable") from None
    if isinstance(cached, dict):
        return cached
    endpoint = provider.metadata().get("introspection_endpoint")
    try:
        url = check_url(endpoint, issuer=provider.issuer)
        client_id = app_settings.RESOURCE_INTROSPECTION_CLIENT_ID or ""
        secret = app_settings.RESOURCE_INTROSPECTION_CLIENT_SECRET or ""
        # RFC 6749 §2.3.1: both are form-urlencoded before they are joined and base64-encoded.
        credentials = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
        answer = fetch_json(
            "POST",
            url,
            data={"token": token, "token_type_hint": "access_token"},
            headers={"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")},
        )
    except RemoteError as exc:
        logger.warning("Introspection at %s failed: %s", provider.issuer, exc)
        raise InvalidToken("revocation status unavailable") from None
    if answer.get("active") is not True:
        if expires_at is not None:
            revocation.deny(token, expires_at)
        return None
    ttl = app_settings.RESOURCE_INTROSPECTION_CACHE_SECONDS
    exp = numeric_date(answer.get("exp"))
    if exp is not None:
        ttl = min(ttl, int(exp - time.time()))
    if ttl > 0:
        try:
            cache.set(key, answer, ttl)
        except Exception:  # noqa: BLE001
            logger.exception("The introspection cache is unavailable.")
    return answer
