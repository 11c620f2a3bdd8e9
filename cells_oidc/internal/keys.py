"""Signing keys: the key set every process signs and verifies with, and its life cycle.

Two sources, never mixed:

- **the database** (:class:`cells_oidc.models.SigningKey`), as soon as it holds one row: keys in
  the states ``next`` (published, not signing), ``current`` (signing), ``retired`` (published until
  every token it signed has expired) and ``revoked`` (gone at once). Private keys are stored
  encrypted with the key-encryption key of ``CELLS_OIDC_KEY_ENCRYPTION_KEY`` and decrypted when a
  process first signs with them;
- else **the settings**, as before: DOT's ``OIDC_RSA_PRIVATE_KEY`` signs (RS256) and
  ``OIDC_RSA_PRIVATE_KEYS_INACTIVE`` are published. ``manage.py cells_oidc_keys import
  --from-settings`` moves them into the database with the same ``kid``.

The ``kid`` of a key is its RFC 7638 thumbprint, as in DOT.

**Every process sees a change without a restart.** Each process keeps a parsed :class:`KeySet`.
Every change made here writes a new *key-set version* to the shared cache (the revocation cache,
which cells-oidc requires to be shared: check ``cells_oidc.E013``), after commit; :func:`key_set`
compares that version (one cache read, as the deny-list does per token) and reloads the keys from
the database when it changed. Without the cache, a process reloads at least every
``CELLS_OIDC_KEYS_REFRESH_SECONDS``. So a revoked key's tokens fail at the next request in every
process, without a database query per request.

The public functions other modules use (kept stable): :func:`signing_key`,
:func:`verification_key`, :func:`jwks`, :func:`algorithms_in_use`, :func:`id_token_algorithms`.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from asgiref.local import Local
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone
from jwcrypto import jwk
from oauth2_provider.settings import oauth2_settings

from cells_oidc.conf import app_settings
from cells_oidc.internal.cache import fence, isolated

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

    from cells_oidc.internal.jws import PublicKey
    from cells_oidc.models import SigningKey as SigningKeyRow

__all__ = [
    "ACCESS_TOKEN",
    "ALGORITHM",
    "ID_TOKEN",
    "SUPPORTED_ALGORITHMS",
    "KeyEncryptionError",
    "KeyOperationError",
    "KeySet",
    "KeyUnavailable",
    "SigningKey",
    "active_key",
    "algorithms_in_use",
    "create_key",
    "id_token_algorithms",
    "import_key",
    "import_from_settings",
    "jwks",
    "jwks_max_age",
    "key_encryption",
    "key_set",
    "reencrypt",
    "retire",
    "revoke",
    "rotate",
    "signing_key",
    "verification_key",
    "wait_for_documents",
]

logger = logging.getLogger(__name__)

#: The default algorithm: ID tokens are RS256 unless a client's policy says otherwise (the Cells
#: clients expect RS256; OpenID Connect Core §15.1 makes it the one every client supports).
ALGORITHM = "RS256"
SUPPORTED_ALGORITHMS = ("RS256", "ES256", "EdDSA")
ID_TOKEN = "id_token"
ACCESS_TOKEN = "access_token"
BOTH = "both"
USES = (BOTH, ID_TOKEN, ACCESS_TOKEN)

#: Where the key-set version lives in the shared cache.
VERSION_CACHE_KEY = "cells_oidc:keys:version"
#: The most the JWKS may be cached by clients (seconds), as before.
JWKS_MAX_AGE = 300


class KeyOperationError(Exception):
    """A key operation refused (unknown kid, wrong state, bad input); the message says why."""


def _unknown_algorithm(algorithm: object) -> KeyOperationError:
    return KeyOperationError(
        f"unknown algorithm {algorithm!r}; choose one of {', '.join(SUPPORTED_ALGORITHMS)}"
    )


class KeyUnavailable(ImproperlyConfigured):
    """No current key signs what is asked (e.g. ES256 access tokens without an ES256 key)."""


class KeyEncryptionError(ImproperlyConfigured):
    """The key-encryption key is missing or malformed, or cannot decrypt a stored key."""


@dataclass(frozen=True)
class SigningKey:
    """A key that can sign: its ``kid``, the private JWK and its algorithm."""

    kid: str
    key: jwk.JWK
    algorithm: str = ALGORITHM

    def public_jwk(self) -> dict[str, Any]:
        return public_jwk_of(self.key, kid=self.kid, algorithm=self.algorithm)


@dataclass(frozen=True)
class PublishedKey:
    """A key of the key set: what the JWKS shows and what verification needs."""

    kid: str
    algorithm: str
    use: str
    state: str
    jwk: dict[str, Any]
    public: Any
    #: Decrypts (or parses) the private key; ``None`` for keys that never sign again.
    private_source: str | None = None
    from_settings: bool = False


@dataclass
class KeySet:
    """The keys of this site at one version: parsed once, shared by every request of a process."""

    version: str
    source: str  # "database" or "settings"
    published: tuple[PublishedKey, ...]
    signers: dict[tuple[str, str], PublishedKey]
    valid_until: float
    settings_ref: tuple[Any, ...] = ()
    by_kid: dict[str, PublishedKey] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_kid = {key.kid: key for key in self.published}
        self.document = {"keys": [dict(key.jwk) for key in self.published]}

    @property
    def algorithms(self) -> frozenset[str]:
        return frozenset(key.algorithm for key in self.published)


# ---- keys, JWKs and the key-encryption key -----------------------------------------------------
def algorithm_of(key: jwk.JWK) -> str:
    """The one algorithm a key may sign with (RFC 8725 §3.1: the key decides, never the token)."""
    kty, crv = key.get("kty"), key.get("crv")
    if kty == "RSA":
        return "RS256"
    if kty == "EC" and crv == "P-256":
        return "ES256"
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    raise ValueError("the key must be RSA, EC P-256 or Ed25519")


def generate(algorithm: str, *, bits: int = 2048) -> jwk.JWK:
    """A new private key for ``algorithm``."""
    if algorithm == "RS256":
        return jwk.JWK.generate(kty="RSA", size=bits)
    if algorithm == "ES256":
        return jwk.JWK.generate(kty="EC", crv="P-256")
    if algorithm == "EdDSA":
        return jwk.JWK.generate(kty="OKP", crv="Ed25519")
    raise _unknown_algorithm(algorithm)


def parse_private_pem(pem: str | bytes) -> jwk.JWK:
    """A private key from PEM; ``ValueError`` when it is not one cells-oidc can sign with."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        key = jwk.JWK.from_pem(data)
    except Exception as exc:  # noqa: BLE001 - jwcrypto/cryptography raise many kinds
        raise ValueError("not a PEM private key") from exc
    if not key.has_private:
        raise ValueError("a public key cannot sign; give the private key")
    algorithm_of(key)
    if key.get("kty") == "RSA" and key.get_op_key("verify").key_size < 2048:
        raise ValueError("an RSA key must have 2048 bits or more")
    return key


def public_jwk_of(key: jwk.JWK, *, kid: str, algorithm: str) -> dict[str, Any]:
    """The public JWK as published (RFC 7517 §4: ``kid``, ``alg``, ``use`` and public members only)."""
    data: dict[str, Any] = json.loads(key.export_public())
    data.update({"kid": kid, "alg": algorithm, "use": "sig"})
    return data


def private_pem(key: jwk.JWK) -> str:
    return key.export_to_pem(private_key=True, password=None).decode("ascii")


def key_encryption() -> MultiFernet:
    """The configured key-encryption key(s); :class:`KeyEncryptionError` when missing or malformed."""
    return _fernet()


def _fernet() -> MultiFernet:
    from cryptography.fernet import Fernet, MultiFernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from django.conf import settings

    fernets = []
    for index, value in enumerate(app_settings.KEY_ENCRYPTION_KEYS):
        try:
            fernets.append(Fernet(value))
        except (ValueError, TypeError):
            raise KeyEncryptionError(
                f"CELLS_OIDC_KEY_ENCRYPTION_KEY[{index}] is not a Fernet key (32 url-safe base64-encoded "
                "bytes); make one with 'manage.py cells_oidc_keys kek'."
            ) from None
    if app_settings.KEY_ENCRYPTION_FROM_SECRET_KEY:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"cells-oidc", info=b"signing-key encryption"
        ).derive(str(settings.SECRET_KEY).encode("utf-8"))
        fernets.append(Fernet(base64.urlsafe_b64encode(derived)))
    if not fernets:
        raise KeyEncryptionError(
            "CELLS_OIDC_KEY_ENCRYPTION_KEY is not set: signing keys in the database are stored encrypted "
            "with it (docs/keys.md). Make one with 'manage.py cells_oidc_keys kek'."
        )
    return MultiFernet(fernets)


def encrypt_private_key(pem: str) -> str:
    return _fernet().encrypt(pem.encode("ascii")).decode("ascii")


def decrypt_private_key(token: str, *, kid: str) -> jwk.JWK:
    """The private key of a stored row, checked to be the key its ``kid`` names."""
    from cryptography.fernet import InvalidToken

    try:
        pem = _fernet().decrypt(token.encode("ascii"))
    except InvalidToken:
        raise KeyEncryptionError(
            f"The private key of {kid} cannot be decrypted: CELLS_OIDC_KEY_ENCRYPTION_KEY does not hold "
            "the key-encryption key it was stored with (or the row was altered)."
        ) from None
    key = parse_private_pem(pem)
    # A row whose ciphertext was swapped with another row's must not sign under this kid.
    if key.thumbprint() != kid:
        raise KeyEncryptionError(f"The stored private key of {kid} is not the key of that kid.")
    return key


# ---- the key set of this process ---------------------------------------------------------------
_lock = threading.Lock()
_current: KeySet | None = None
_private_keys: dict[str, jwk.JWK] = {}  # by kid (a thumbprint: the key of a kid never changes)


def _cache() -> Any:
    from cells_oidc.internal.revocation import revocation_cache

    return revocation_cache()


# The version read by the current request (docs/performance.md): a request that signs two tokens
# and verifies one reads the shared cache once, not once per key look-up. Reset when a request
# starts (Django's request_started, connected in apps.py) and when it finishes; outside a request
# (management commands, tasks) every look-up reads the cache. asgiref's Local is per thread and
# per asyncio context, so concurrent requests never share a read.
_request = Local()
_UNREAD = object()

# Public documents (discovery, the JWKS: docs/keys.md, "The JWKS and its cache") may serve this
# process's key set for CELLS_OIDC_KEYS_DOCUMENT_SECONDS after a read of the shared version last
# confirmed it, instead of reading the version on every request (docs/performance.md). Signing and
# verification never use this: they read the version once per request, always.
_last_read: tuple[float, str] = (0.0, "")  # (monotonic time before the read, the version read)
_confirmed: tuple[float, KeySet | None] = (0.0, None)  # (since when, the key set it confirmed)


def on_request_started(**kwargs: Any) -> None:
    _request.version = _UNREAD


def on_request_finished(**kwargs: Any) -> None:
    _request.version = None


def _shared_version() -> str | None:
    """The key-set version in the shared cache (set when missing), or ``None`` if unreachable;
    read once per request."""
    memo = getattr(_request, "version", None)
    if memo is not None and memo is not _UNREAD:
        return str(memo)
    version = _read_shared_version()
    if memo is _UNREAD and version is not None:
        _request.version = version
    return version


def note_shared_version(version: object) -> None:
    """Remember ``version``, read from the shared cache by another look-up of the same request
    (:func:`cells_oidc.internal.revocation.status` reads it with the deny-list entry: one
    round trip for both)."""
    global _last_read
    if version is not None and getattr(_request, "version", None) is _UNREAD:
        _request.version = str(version)
        _last_read = (time.monotonic(), str(version))


def _read_shared_version() -> str | None:
    global _last_read
    started = time.monotonic()  # a confirmation dates from before the read (never later)
    try:
        with isolated(_cache()) as cache:
            version = cache.get(VERSION_CACHE_KEY)
            if version is None:
                cache.add(VERSION_CACHE_KEY, uuid.uuid4().hex, None)
                version = cache.get(VERSION_CACHE_KEY)
    except Exception:  # noqa: BLE001 - an unreachable cache falls back to the time bound
        logger.warning("The key-set version cannot be read from the shared cache.", exc_info=True)
        return None
    if version is None:
        return None
    _last_read = (started, str(version))
    return str(version)


def bump_version() -> None:
    """Tell every process the key set changed: now, and again once the transaction commits (a
    process reading the database before the commit would otherwise keep the old keys)."""
    forget()

    def write() -> None:
        global _changed_at
        try:
            cache = _cache()
            cache.set(VERSION_CACHE_KEY, uuid.uuid4().hex, None)
            fence(cache)  # processes keeping a copy of the version have the change before we go on
        except Exception:  # noqa: BLE001
            logger.error(
                "The key-set version could not be written to the shared cache: other processes see the "
                "change within CELLS_OIDC_KEYS_REFRESH_SECONDS.",
                exc_info=True,
            )
        # After the write: a read that started before it ended may have missed it, and is trusted
        # for CELLS_OIDC_KEYS_DOCUMENT_SECONDS from its start at most (wait_for_documents).
        _changed_at = time.monotonic()
        forget()

    write()
    transaction.on_commit(write)


_changed_at: float | None = None  # when this process last wrote a new key-set version


def wait_for_documents() -> None:
    """Return once every process's discovery and JWKS show this process's last key change: a
    process may serve its key set for ``CELLS_OIDC_KEYS_DOCUMENT_SECONDS`` after confirming it
    (:func:`key_set`). ``cells_oidc_keys`` calls this before it exits."""
    if _changed_at is None:
        return
    remaining = _changed_at + app_settings.KEYS_DOCUMENT_SECONDS - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def forget(**kwargs: Any) -> None:
    """Drop this process's key set (also a ``setting_changed`` receiver)."""
    global _current, _confirmed
    _current = None
    _confirmed = (0.0, None)
    if getattr(_request, "version", None) is not None:
        _request.version = _UNREAD  # the current request reads the version again


def _settings_ref() -> tuple[Any, ...]:
    return (oauth2_settings.OIDC_RSA_PRIVATE_KEY, *(oauth2_settings.OIDC_RSA_PRIVATE_KEYS_INACTIVE or ()))


def _same_settings(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def key_set(*, document: bool = False) -> KeySet:
    """This process's key set, reloaded when the shared version changed or it is too old.

    ``document``: for the public documents only (discovery, the JWKS), which every client caches
    for minutes anyway (``Cache-Control``): the key set is served without reading the shared
    version while a read made less than ``CELLS_OIDC_KEYS_DOCUMENT_SECONDS`` ago confirmed it.
    """
    global _current
    if document:
        since, confirmed = _confirmed
        now = time.monotonic()
        if (
            confirmed is not None
            and confirmed is _current
            and _fresh(confirmed, now)
            and now - since < app_settings.KEYS_DOCUMENT_SECONDS
        ):
            return confirmed
    version = _shared_version()
    current = _current
    now = time.monotonic()
    if current is not None and _fresh(current, now) and version in (None, current.version):
        _confirm(current)
        return current
    with _lock:
        built = _build(version or "", now)
        _current = built
        _confirm(built)
        return built


def _fresh(current: KeySet, now: float) -> bool:
    """``current`` may still be used: within its time bound, built from today's settings keys."""
    return now < current.valid_until and _same_settings(current.settings_ref, _settings_ref())


def _confirm(current: KeySet) -> None:
    """Remember that the shared version read last (when it was read) is ``current``'s."""
    global _confirmed
    read_at, version = _last_read
    if version and version == current.version and read_at > _confirmed[0]:
        _confirmed = (read_at, current)


def _retention() -> timedelta:
    configured = app_settings.KEY_RETENTION_SECONDS
    if configured is not None:
        return timedelta(seconds=configured)
    lifetimes = [oauth2_settings.ID_TOKEN_EXPIRE_SECONDS, oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS]
    longest = max(int(value) for value in lifetimes if isinstance(value, int) and not isinstance(value, bool))
    return timedelta(seconds=longest + app_settings.RESOURCE_LEEWAY)


def _build(version: str, now: float) -> KeySet:
    from cells_oidc.models import SigningKey as Row

    refresh = float(app_settings.KEYS_REFRESH_SECONDS)
    settings_ref = _settings_ref()
    rows = list(Row.objects.exclude(state=Row.State.REVOKED).order_by("-created_at"))
    if not rows and not Row.objects.exists():
        return _settings_key_set(version, now + refresh, settings_ref)
    wall = timezone.now()
    retention = _retention()
    order = {Row.State.CURRENT: 0, Row.State.NEXT: 1, Row.State.RETIRED: 2}
    published: list[PublishedKey] = []
    signers: dict[tuple[str, str], PublishedKey] = {}
    valid_until = now + refresh
    for row in sorted(rows, key=lambda r: order.get(r.state, 3)):
        if row.state == Row.State.RETIRED:
            ends = (row.retired_at or wall) + retention
            if ends <= wall:
                continue  # every token it signed has expired: it leaves the JWKS
            valid_until = min(valid_until, now + (ends - wall).total_seconds())
        try:
            public = jwk.JWK(**row.public_jwk).get_op_key("verify")
        except Exception:  # noqa: BLE001 - a damaged row verifies nothing
            logger.error("The public key of signing key %s is unusable; it is left out.", row.kid)
            continue
        key = PublishedKey(
            kid=row.kid,
            algorithm=row.algorithm,
            use=row.use,
            state=row.state,
            jwk=public_jwk_of(jwk.JWK(**row.public_jwk), kid=row.kid, algorithm=row.algorithm),
            public=public,
            private_source=row.encrypted_private_key if row.state == Row.State.CURRENT else None,
        )
        published.append(key)
        if row.state == Row.State.CURRENT:
            signers[(row.algorithm, row.use)] = key
    return KeySet(
        version=version,
        source="database",
        published=tuple(published),
        signers=signers,
        valid_until=valid_until,
        settings_ref=settings_ref,
    )


def _settings_key_set(version: str, valid_until: float, settings_ref: tuple[Any, ...]) -> KeySet:
    published: list[PublishedKey] = []
    for index, pem in enumerate(settings_ref):
        if not pem:
            continue
        key = _load_settings_pem(str(pem))
        if key.kid in {k.kid for k in published}:
            continue  # RFC 7517 §4.5: kids of one JWK Set must be distinct
        published.append(
            PublishedKey(
                kid=key.kid,
                algorithm=ALGORITHM,
                use=BOTH,
                state="current" if index == 0 else "retired",
                jwk=key.public_jwk(),
                public=key.key.get_op_key("verify"),
                from_settings=True,
            )
        )
    signers = {(ALGORITHM, BOTH): published[0]} if published else {}
    return KeySet(
        version=version,
        source="settings",
        published=tuple(published),
        signers=signers,
        valid_until=valid_until,
        settings_ref=settings_ref,
    )


_settings_keys: dict[str, SigningKey] = {}


def _load_settings_pem(pem: str) -> SigningKey:
    # Parsing a PEM and hashing the thumbprint cost more than signing; do it once per key.
    loaded = _settings_keys.get(pem)
    if loaded is None:
        key = jwk.JWK.from_pem(pem.encode("utf-8"))
        if key.get("kty") != "RSA" or not key.has_private:
            raise ValueError("the signing key must be an RSA private key")
        loaded = _settings_keys[pem] = SigningKey(kid=key.thumbprint(), key=key)
    return loaded


def _private(key: PublishedKey) -> jwk.JWK:
    if key.from_settings:
        return _settings_keys_by_kid(key.kid)
    private = _private_keys.get(key.kid)
    if private is None:
        if key.private_source is None:
            raise KeyUnavailable(f"The key {key.kid} does not sign.")
        private = _private_keys[key.kid] = decrypt_private_key(key.private_source, kid=key.kid)
    return private


def _settings_keys_by_kid(kid: str) -> jwk.JWK:
    for loaded in _settings_keys.values():
        if loaded.kid == kid:
            return loaded.key
    raise KeyUnavailable(f"The settings key {kid} is not loaded.")


# ---- what the rest of cells-oidc asks ----------------------------------------------------------
def signing_key(alg: str = ALGORITHM, use: str = ID_TOKEN) -> SigningKey:
    """The current key that signs ``use`` tokens (``"id_token"`` or ``"access_token"``) with ``alg``.

    Raises :class:`KeyUnavailable` when there is none (e.g. ``CELLS_OIDC_ACCESS_TOKEN_ALGORITHM =
    "ES256"`` without an ES256 key: ``manage.py cells_oidc_keys create --algorithm ES256``).
    """
    keys = key_set()
    key = keys.signers.get((alg, use)) or keys.signers.get((alg, BOTH))
    if key is None:
        raise KeyUnavailable(
            f"No current {alg} key signs {use.replace('_', ' ')}s; create one with "
            f"'manage.py cells_oidc_keys create --algorithm {alg}'."
        )
    return SigningKey(kid=key.kid, key=_private(key), algorithm=key.algorithm)


def verification_key(kid: object) -> PublicKey | None:
    """The public key published under ``kid`` (current, next or retired within its window), or
    ``None`` (unknown, revoked, or retired longer than its tokens live)."""
    if not isinstance(kid, str):
        return None
    key = key_set().by_kid.get(kid)
    return None if key is None else key.public


def algorithms_in_use() -> frozenset[str]:
    """The algorithms of the published keys: exactly those the verifier accepts."""
    return key_set().algorithms


def id_token_algorithms(*, document: bool = False) -> list[str]:
    """The algorithms ID tokens can be signed with now (discovery's
    ``id_token_signing_alg_values_supported``), RS256 first. ``document``: see :func:`key_set`."""
    algorithms = {alg for (alg, use) in key_set(document=document).signers if use in (BOTH, ID_TOKEN)}
    return sorted(algorithms, key=SUPPORTED_ALGORITHMS.index)


def jwks() -> dict[str, Any]:
    """The public JWK Set (RFC 7517 §5) of every published key: current first, then next, then
    retired ones whose tokens may still be in use. Served by the JWKS endpoint (``document``: see
    :func:`key_set`)."""
    return key_set(document=True).document


def jwks_max_age() -> int:
    """``Cache-Control: max-age`` of the JWKS: shorter than a ``next`` key is published before it
    signs, so a client caching the JWKS knows a key before its first token."""
    return max(0, min(JWKS_MAX_AGE, app_settings.KEY_PUBLISH_SECONDS // 2))


# Kept for callers of the settings-era API.
def active_key() -> SigningKey:
    """The key that signs RS256 ID tokens."""
    return signing_key(ALGORITHM, ID_TOKEN)


def settings_keys() -> list[SigningKey]:
    """The keys of the settings (active first), parsed; ``ValueError`` when one is unusable."""
    keys: list[SigningKey] = []
    for pem in _settings_ref():
        if not pem:
            continue
        key = _load_settings_pem(str(pem))
        if key.kid not in {k.kid for k in keys}:
            keys.append(key)
    return keys


all_keys = settings_keys


def _settings_keys_or_none() -> list[SigningKey]:
    try:
        return settings_keys()
    except (ValueError, TypeError, ImproperlyConfigured):
        return []


def key_by_kid(kid: object) -> PublishedKey | None:
    return key_set().by_kid.get(kid) if isinstance(kid, str) else None


def generate_private_key_pem(bits: int = 2048) -> str:
    """A new RSA private key as PKCS#8 PEM (used by ``manage.py cells_oidc_keygen``)."""
    return private_pem(jwk.JWK.generate(kty="RSA", size=bits))


# ---- the life cycle (manage.py cells_oidc_keys) ------------------------------------------------
def _emit(kid: str, action: str) -> None:
    from cells_oidc import signals
    from cells_oidc.internal import events

    events.emit(signals.key_changed, kid=kid, action=action)


def _changed(kid: str, action: str) -> None:
    logger.info("Signing key %s %s.", kid, action)
    _emit(kid, action)


def _check_use(algorithm: str, use: str) -> None:
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise _unknown_algorithm(algorithm)
    if use not in USES:
        raise KeyOperationError(f"unknown use {use!r}; choose one of {', '.join(USES)}")


def _new_row(key: jwk.JWK, *, algorithm: str, use: str, state: str, now: datetime) -> SigningKeyRow:
    from cells_oidc.models import SigningKey as Row

    kid = key.thumbprint()
    if Row.objects.filter(kid=kid).exists():
        raise KeyOperationError(f"the key {kid} is already stored")
    row = Row(
        kid=kid,
        algorithm=algorithm,
        use=use,
        state=state,
        public_jwk=public_jwk_of(key, kid=kid, algorithm=algorithm),
        encrypted_private_key=encrypt_private_key(private_pem(key)),
        created_at=now,
        activated_at=now if state == Row.State.CURRENT else None,
        retired_at=now if state == Row.State.RETIRED else None,
    )
    row.save(force_insert=True)
    return row


def _table_empty_guard() -> None:
    """Switching from the settings key to the database must keep the settings key's tokens valid."""
    from cells_oidc.models import SigningKey as Row

    if not Row.objects.exists() and oauth2_settings.OIDC_RSA_PRIVATE_KEY:
        raise KeyOperationError(
            "the database holds no key yet and the settings have one: run "
            "'manage.py cells_oidc_keys import --from-settings' first, so that the tokens it signed keep "
            "verifying"
        )


def create_key(
    algorithm: str = ALGORITHM, *, use: str = BOTH, bits: int = 2048, now: datetime | None = None
) -> SigningKeyRow:
    """Create a key: ``current`` when its algorithm and use have none yet, else ``next``."""
    from cells_oidc.models import SigningKey as Row

    _check_use(algorithm, use)
    if algorithm == "RS256" and bits not in (2048, 3072, 4096):
        raise KeyOperationError("an RSA key has 2048, 3072 or 4096 bits")
    now = now or timezone.now()
    _fernet()  # a missing key-encryption key fails before anything is written
    with transaction.atomic():
        _table_empty_guard()
        ring = list(
            Row.objects.select_for_update().ring(algorithm, use).filter(state__in=["current", "next"])
        )
        states = {row.state: row for row in ring}
        if "next" in states:
            raise KeyOperationError(
                f"{algorithm} ({use}) already has a next key, {states['next'].kid}; "
                "run 'rotate' to promote it"
            )
        state = Row.State.NEXT if "current" in states else Row.State.CURRENT
        if state == Row.State.CURRENT and algorithm != ALGORITHM and not _has_rs256_id_signer():
            raise KeyOperationError(
                "the first key must be RS256 (ID tokens default to RS256): create that one first"
            )
        row = _new_row(generate(algorithm, bits=bits), algorithm=algorithm, use=use, state=state, now=now)
        bump_version()
    _changed(row.kid, "created")
    return row


def _has_rs256_id_signer() -> bool:
    from cells_oidc.models import SigningKey as Row

    return Row.objects.filter(algorithm=ALGORITHM, use__in=[BOTH, ID_TOKEN], state=Row.State.CURRENT).exists()


def import_key(
    pem: str | bytes, *, use: str = BOTH, state: str | None = None, now: datetime | None = None
) -> SigningKeyRow:
    """Store a private key from PEM (the file of ``signing_key_file``, say), with its thumbprint as
    ``kid``: ``current`` when its algorithm and use have none, else ``next`` (or ``state``)."""
    from cells_oidc.models import SigningKey as Row

    try:
        key = parse_private_pem(pem)
    except ValueError as exc:
        raise KeyOperationError(str(exc)) from None
    algorithm = algorithm_of(key)
    _check_use(algorithm, use)
    now = now or timezone.now()
    _fernet()
    with transaction.atomic():
        if key.thumbprint() not in {k.kid for k in _settings_keys_or_none()}:
            _table_empty_guard()
        ring = {
            row.state: row
            for row in Row.objects.select_for_update()
            .ring(algorithm, use)
            .filter(state__in=["current", "next"])
        }
        if state is None:
            state = Row.State.NEXT if "current" in ring else Row.State.CURRENT
        if state not in (Row.State.CURRENT, Row.State.NEXT, Row.State.RETIRED):
            raise KeyOperationError("an imported key is current, next or retired")
        if state in ring:
            raise KeyOperationError(f"{algorithm} ({use}) already has a {state} key, {ring[state].kid}")
        row = _new_row(key, algorithm=algorithm, use=use, state=state, now=now)
        bump_version()
    _changed(row.kid, "imported")
    return row


def import_from_settings(*, now: datetime | None = None) -> list[SigningKeyRow]:
    """Store the settings' keys: ``OIDC_RSA_PRIVATE_KEY`` as the current RS256 key (same kid, so its
    tokens keep verifying), each of ``OIDC_RSA_PRIVATE_KEYS_INACTIVE`` as retired. Keys already
    stored are skipped, so it can run twice."""
    from cells_oidc.models import SigningKey as Row

    try:
        keys = settings_keys()
    except (ValueError, TypeError, ImproperlyConfigured) as exc:
        raise KeyOperationError(f"the settings' key cannot be read: {exc}") from None
    if not keys or not oauth2_settings.OIDC_RSA_PRIVATE_KEY:
        raise KeyOperationError("the settings hold no signing key (OAUTH2_PROVIDER['OIDC_RSA_PRIVATE_KEY'])")
    now = now or timezone.now()
    _fernet()
    imported: list[Row] = []
    with transaction.atomic():
        stored = set(Row.objects.filter(kid__in=[key.kid for key in keys]).values_list("kid", flat=True))
        has_current = Row.objects.ring(ALGORITHM, BOTH).filter(state=Row.State.CURRENT).exists()
        for index, key in enumerate(keys):
            if key.kid in stored:
                continue
            state = Row.State.CURRENT if index == 0 and not has_current else Row.State.RETIRED
            imported.append(_new_row(key.key, algorithm=ALGORITHM, use=BOTH, state=state, now=now))
        if imported:
            bump_version()
    for row in imported:
        _changed(row.kid, "imported")
    return imported


@dataclass
class RotationResult:
    """What ``rotate`` did to one algorithm and use."""

    algorithm: str
    use: str
    promoted: str | None = None
    retired: str | None = None
    created: str | None = None
    skipped: str | None = None


def rotate(
    *,
    algorithm: str | None = None,
    older_than: timedelta | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> list[RotationResult]:
    """Rotate every algorithm and use that has a current key (or only ``algorithm``'s).

    Promotes ``next`` → ``current`` and ``current`` → ``retired``, then creates a new ``next``.
    A ``next`` key published for less than ``CELLS_OIDC_KEY_PUBLISH_SECONDS`` is not promoted
    (clients caching the JWKS may not know it yet) unless ``force``; without a ``next`` key, one is
    created and promoted by a later run. With ``older_than``, a current key younger than that is
    left alone: safe to run from cron as often as wanted.
    """
    from cells_oidc.models import SigningKey as Row

    if algorithm is not None and algorithm not in SUPPORTED_ALGORITHMS:
        raise _unknown_algorithm(algorithm)
    now = now or timezone.now()
    publish = timedelta(seconds=app_settings.KEY_PUBLISH_SECONDS)
    _fernet()
    results: list[RotationResult] = []
    events: list[tuple[str, str]] = []
    try:
        with transaction.atomic():
            rows = list(Row.objects.select_for_update().filter(state__in=["current", "next"]).order_by("pk"))
            currents = {(r.algorithm, r.use): r for r in rows if r.state == Row.State.CURRENT}
            nexts = {(r.algorithm, r.use): r for r in rows if r.state == Row.State.NEXT}
            rings = sorted(ring for ring in currents if algorithm is None or ring[0] == algorithm)
            if not rings:
                raise KeyOperationError(
                    "no current key in the database"
                    + (f" for {algorithm}" if algorithm else "")
                    + ": run 'import --from-settings' or 'create' first"
                )
            for ring in rings:
                current, upcoming = currents[ring], nexts.get(ring)
                result = RotationResult(algorithm=ring[0], use=ring[1])
                results.append(result)
                signing_since = current.activated_at or current.created_at
                if older_than is not None and now - signing_since < older_than:
                    result.skipped = f"the current key signs since {signing_since:%Y-%m-%d %H:%M}"
                    continue
                if upcoming is None:
                    created = _new_row(
                        generate(ring[0]), algorithm=ring[0], use=ring[1], state="next", now=now
                    )
                    result.created = created.kid
                    result.skipped = "no next key was published yet; it signs from the next rotation"
                    events.append((created.kid, "created"))
                    continue
                if not force and now - upcoming.created_at < publish:
                    result.skipped = (
                        f"the next key {upcoming.kid} is published for less than "
                        f"{app_settings.KEY_PUBLISH_SECONDS} s; clients may not know it yet"
                    )
                    continue
                Row.objects.filter(pk=current.pk).update(state=Row.State.RETIRED, retired_at=now)
                Row.objects.filter(pk=upcoming.pk).update(state=Row.State.CURRENT, activated_at=now)
                created = _new_row(generate(ring[0]), algorithm=ring[0], use=ring[1], state="next", now=now)
                result.retired, result.promoted, result.created = current.kid, upcoming.kid, created.kid
                events += [(current.kid, "retired"), (upcoming.kid, "promoted"), (created.kid, "created")]
            if events:
                bump_version()
    except IntegrityError:
        raise KeyOperationError("another rotation ran at the same moment; run it again") from None
    for kid, action in events:
        _changed(kid, action)
    return results


def _replace_current(row: SigningKeyRow, now: datetime, events: list[tuple[str, str]]) -> str:
    """Give ``row``'s algorithm and use another current key: its next one, else a new one."""
    from cells_oidc.models import SigningKey as Row

    upcoming = (
        Row.objects.select_for_update().ring(row.algorithm, row.use).filter(state=Row.State.NEXT).first()
    )
    if upcoming is not None:
        Row.objects.filter(pk=upcoming.pk).update(state=Row.State.CURRENT, activated_at=now)
        events.append((upcoming.kid, "promoted"))
        return upcoming.kid
    created = _new_row(
        generate(row.algorithm), algorithm=row.algorithm, use=row.use, state="current", now=now
    )
    events.append((created.kid, "created"))
    return created.kid


def _change_state(kid: str, target: str, *, now: datetime | None) -> tuple[SigningKeyRow, str | None]:
    from cells_oidc.models import SigningKey as Row

    now = now or timezone.now()
    events: list[tuple[str, str]] = []
    replacement: str | None = None
    with transaction.atomic():
        row = Row.objects.select_for_update().filter(kid=kid).first()
        if row is None:
            raise KeyOperationError(f"no stored key has the kid {kid!r} (see 'list')")
        if row.state == Row.State.REVOKED or row.state == target:
            raise KeyOperationError(f"the key {kid} is already {row.state}")
        if target == Row.State.RETIRED and row.state != Row.State.CURRENT and row.state != Row.State.NEXT:
            raise KeyOperationError(f"the key {kid} is {row.state}; only current or next keys retire")
        was_current = row.state == Row.State.CURRENT
        if was_current:
            _fernet()  # a replacement may have to be created
            Row.objects.filter(pk=row.pk).update(state=target, **{f"{target}_at": now})
            replacement = _replace_current(row, now, events)
        else:
            Row.objects.filter(pk=row.pk).update(state=target, **{f"{target}_at": now})
        events.insert(0, (row.kid, target))
        bump_version()
    for changed, action in events:
        _changed(changed, action)
    row.refresh_from_db()
    return row, replacement


def retire(kid: str, *, now: datetime | None = None) -> tuple[SigningKeyRow, str | None]:
    """Stop signing with ``kid`` (a current key is replaced by its next, else a new key); it stays
    published until its tokens have expired. Returns the row and the kid of the replacement."""
    return _change_state(kid, "retired", now=now)


def revoke(kid: str, *, now: datetime | None = None) -> tuple[SigningKeyRow, str | None]:
    """Withdraw ``kid`` at once (a compromised key): it leaves the JWKS and every token it signed
    fails in every process at its next request. A current key is replaced as by :func:`retire`."""
    return _change_state(kid, "revoked", now=now)


def reencrypt() -> int:
    """Encrypt every stored private key with the first key-encryption key (after a KEK rotation)."""
    from cells_oidc.models import SigningKey as Row

    fernet = _fernet()
    count = 0
    with transaction.atomic():
        for row in Row.objects.select_for_update().exclude(encrypted_private_key=""):
            try:
                token = fernet.rotate(row.encrypted_private_key.encode("ascii")).decode("ascii")
            except Exception:  # noqa: BLE001 - cryptography's InvalidToken
                raise KeyEncryptionError(
                    f"The private key of {row.kid} cannot be decrypted with CELLS_OIDC_KEY_ENCRYPTION_KEY."
                ) from None
            Row.objects.filter(pk=row.pk).update(encrypted_private_key=token)
            count += 1
    return count


def describe(rows: Iterable[SigningKeyRow]) -> list[dict[str, Any]]:
    """What ``list`` shows of each key (never private material)."""
    retention = _retention()
    out = []
    for row in rows:
        published_until = ""
        if row.state == "retired" and row.retired_at:
            published_until = f"{row.retired_at + retention:%Y-%m-%d %H:%M}"
        out.append(
            {
                "kid": row.kid,
                "algorithm": row.algorithm,
                "use": row.use,
                "state": row.state,
                "created": f"{row.created_at:%Y-%m-%d %H:%M}",
                "signing since": f"{row.activated_at:%Y-%m-%d %H:%M}" if row.activated_at else "",
                "published until": published_until or ("-" if row.state == "revoked" else ""),
            }
        )
    return out
