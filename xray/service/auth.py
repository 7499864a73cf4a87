"""API keys: sent in the `X-API-Key` header, stored only as sha256 hashes in the audit database.

On the first start (no key in the database and none given) a key is generated,
its hash stored, and the key itself printed once. Keys given on the command line
or in ``XRAY_API_KEY`` are registered the same way (hashed). A caller is
identified in the audit trail by the first 12 hex digits of its key's hash.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.security import APIKeyHeader

from xray.errors import ConfigError
from xray.service.store import Store

API_KEY_HEADER = "X-API-Key"
ANONYMOUS = "anonymous"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="The service's API key")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def client_id(key_sha256: str) -> str:
    """How a key appears in the audit trail: never the key, a prefix of its hash."""
    return f"key:{key_sha256[:12]}"


def new_api_key() -> str:
    return "xr_" + secrets.token_urlsafe(24)


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
        raise ConfigError(f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1), not {host!r}: "
                          "anyone on the network could submit and review inspections")


@dataclass
class KeyRing:
    """The hashes of the accepted keys (loaded from the store at start-up)."""

    enabled: bool = True
    hashes: set[str] = field(default_factory=set)

    def identify(self, key: str | None) -> str | None:
        """The client id for a key, or None when it is not accepted."""
        if not key:
            return None
        digest = key_hash(key)
        # compare_digest against each: the time taken does not tell which prefix matched.
        found = None
        for h in self.hashes:
            if hmac.compare_digest(h, digest):
                found = h
        return client_id(found) if found else None


async def require_client(request: Request) -> str:
    """FastAPI dependency: the calling client's id; 401 without a valid key (when auth is on)."""
    from fastapi import HTTPException

    ring: KeyRing = request.app.state.keys
    if not ring.enabled:
        return ANONYMOUS
    key = await _header(request)
    who = ring.identify(key)
    if who is None:
        reason = "missing" if not key else "not valid"
        raise HTTPException(status_code=401, detail=f"API key {reason}: send it in the {API_KEY_HEADER} header",
                            headers={"WWW-Authenticate": API_KEY_HEADER})
    return who


def bootstrap_keys(store: Store, *, auth: bool, api_keys: tuple[str, ...] = ()) -> tuple[KeyRing, str | None]:
    """Register the given keys (hashed) and load the accepted ones; with auth on and no key at all,
    make one and return it too (to be shown once: only its hash is kept)."""
    for key in api_keys:
        store.add_key_hash(key_hash(key), label="configured")
    new_key = None
    if auth and not store.key_hashes():
        new_key = new_api_key()
        store.add_key_hash(key_hash(new_key), label="generated on first start")
    return KeyRing(enabled=auth, hashes=store.key_hashes()), new_key
