"""API keys: sent in the `X-API-Key` header, stored only as salted scrypt hashes in the audit database.

A key made here reads ``xr_<id>_<secret>``: the id (public, 8 hex digits) finds its row, the
scrypt hash of the whole key proves it. Keys given on the command line or in ``XRAY_API_KEY``
(any text) are registered the same way with an id of their own. Each request looks its key's
row up, so a key revoked with ``xray keys revoke`` stops working at once, also in a running
service; a verified key is remembered (by a sha256 held in memory only) so that scrypt runs
once per key and process, not per request.

On the first start (no key in the database and none given) a key is generated, its hash
stored, and the key itself written to ``<data dir>/api-key`` (0600) — never printed or logged.
A caller is identified in the audit trail by its key id.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.security import APIKeyHeader

from xray.atomic import write_atomic
from xray.errors import ConfigError
from xray.service.store import ApiKeyRow, Store

log = logging.getLogger("xray.service")

API_KEY_HEADER = "X-API-Key"
ANONYMOUS = "anonymous"
GENERATED_KEY_FILE = "api-key"
_PREFIX = "xr_"
_CONFIGURED = "cfg-"  # id prefix of keys given as text (their id is not in the key)
# scrypt cost: ~16 MiB and tens of ms per check; paid once per key and process thanks to the cache.
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1, "maxmem": 64 << 20, "dklen": 32}
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="The service's API key")


def scrypt_hash(key: str, salt: str) -> str:
    return hashlib.scrypt(key.encode("utf-8", "surrogatepass"), salt=bytes.fromhex(salt), **_SCRYPT).hex()


def client_id(key_id: str) -> str:
    """How a key appears in the audit trail: its public id, never the key."""
    return f"key:{key_id}"


def new_api_key() -> str:
    return f"{_PREFIX}{secrets.token_hex(4)}_{secrets.token_urlsafe(24)}"


def key_id_of(key: str) -> str | None:
    """The id inside a key made by `new_api_key` (None for keys given as text)."""
    parts = key.split("_", 2)
    if len(parts) == 3 and parts[0] + "_" == _PREFIX and len(parts[1]) == 8:
        return parts[1]
    return None


def add_key(store: Store, key: str, label: str) -> str:
    """Store a key's salted hash; returns its id."""
    key_id = key_id_of(key)
    if key_id is None or store.key(key_id) is not None:
        key_id = _CONFIGURED + secrets.token_hex(4)
    salt = secrets.token_hex(16)
    store.add_key(key_id, salt=salt, scrypt=scrypt_hash(key, salt), label=label)
    return key_id


def create_key(store: Store, label: str = "") -> tuple[str, str]:
    """A new key and its id; the key is in nothing but the return value."""
    key = new_api_key()
    return key, add_key(store, key, label)


def _verifies(row: ApiKeyRow, key: str) -> bool:
    return hmac.compare_digest(row.scrypt, scrypt_hash(key, row.salt))


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth_setting(auth: bool, host: str) -> None:
    """Refuse to run without keys on an address other machines can reach.

    Raises:
        ConfigError: auth is off and `host` is not loopback.
    """
    if not auth and not is_loopback(host):
        raise ConfigError(
            f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1), not {host!r}: "
            "anyone on the network could submit and review inspections"
        )


@dataclass
class KeyRing:
    """Checks keys against the store, per request (so revocation is immediate)."""

    store: Store | None = None
    enabled: bool = True
    # sha256(key) -> key id of keys whose scrypt hash was verified in this process (memory only).
    _verified: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def identify(self, key: str | None) -> str | None:
        """The client id for a key, or None when it is not accepted (unknown or revoked). Blocking."""
        if not key or self.store is None or len(key) > 512:
            return None
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        with self._lock:
            key_id = self._verified.get(digest)
        if key_id is not None:
            row = self.store.key(key_id)
            return client_id(key_id) if row is not None and row.revoked_at is None else None
        candidates: list[ApiKeyRow]
        own_id = key_id_of(key)
        row = self.store.key(own_id) if own_id else None
        if row is not None:
            candidates = [row]
        else:  # a key given as text: few of these, each checked
            candidates = [r for r in self.store.keys() if r.key_id.startswith(_CONFIGURED)]
        for row in candidates:
            if row.revoked_at is None and _verifies(row, key):
                with self._lock:
                    self._verified[digest] = row.key_id
                return client_id(row.key_id)
        return None


async def require_client(request: Request) -> str:
    """FastAPI dependency: the calling client's id; 401 without a valid key (when auth is on)."""
    from fastapi.concurrency import run_in_threadpool

    ring: KeyRing = request.app.state.keys
    if not ring.enabled:
        return ANONYMOUS
    key = await _header(request)
    who = await run_in_threadpool(ring.identify, key) if key else None
    if who is None:
        reason = "missing" if not key else "not valid (unknown or revoked)"
        raise HTTPException(
            status_code=401,
            detail=f"API key {reason}: send it in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )
    return who


def bootstrap_keys(store: Store, *, auth: bool, api_keys: tuple[str, ...] = ()) -> tuple[KeyRing, str | None]:
    """Register the given keys (salted hashes) and, with auth on and no key at all, make one and write it
    to ``<data dir>/api-key`` (0600). Returns the key ring and the generated key (None if none was made).

    A given key that was revoked stays revoked: it is not registered again.
    """
    ring = KeyRing(store=store, enabled=auth)
    rows = store.keys()
    for key in api_keys:
        known = [r for r in rows if r.key_id == key_id_of(key) or r.key_id.startswith(_CONFIGURED)]
        match = next((r for r in known if _verifies(r, key)), None)
        if match is None:
            add_key(store, key, label="configured")
        elif match.revoked_at is not None:
            log.warning("a configured API key (id %s) is revoked; it stays revoked", match.key_id)
    new_key = None
    if auth and not any(r.revoked_at is None for r in store.keys()):
        new_key, key_id = create_key(store, label="generated on first start")
        path = write_atomic(Path(store.data_dir) / GENERATED_KEY_FILE, new_key + "\n", mode=0o600)
        log.warning("new API key %s written to %s (readable by this user only)", key_id, path)
    return ring, new_key
