"""Passwords, JWT access tokens and rotating refresh tokens.

Access tokens are HS256 JWTs whose expiry is checked here, to the fraction of
a second, because the TTL knob allows sub-second lifetimes for tests (PyJWT
truncates ``exp`` to whole seconds). Refresh tokens are opaque random strings
stored only as hashes; each is good for one use (CONTRACT: rotation).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass

import jwt

# Low on purpose: this is a development server and tests log in often.
_PBKDF2_ITERATIONS = 20_000
REFRESH_TTL_S = 30 * 24 * 3600.0


def hash_password(password: str) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), bytes.fromhex(salt), _PBKDF2_ITERATIONS
    )
    return f"{salt}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    salt, _, expected = stored.partition("$")
    digest = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), bytes.fromhex(salt), _PBKDF2_ITERATIONS
    )
    return hmac.compare_digest(digest.hex(), expected)


def signing_secret(conn: sqlite3.Connection) -> str:
    """The JWT secret, kept in the database so tokens survive a restart with ``--db``."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'jwt_secret'").fetchone()
    if row is not None:
        return str(row["value"])
    secret = secrets.token_hex(32)
    conn.execute("INSERT INTO meta (key, value) VALUES ('jwt_secret', ?)", (secret,))
    return secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user and the organization every query is scoped to."""

    user_id: str
    organization_id: str


def issue_access_token(secret: str, principal: Principal, ttl_s: float, *, now: float) -> str:
    claims = {
        "sub": principal.user_id,
        "org": principal.organization_id,
        "typ": "access",
        "iat": int(now),
        "exp_f": now + ttl_s,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def read_access_token(secret: str, token: str, *, now: float) -> Principal | None:
    """The principal of a valid, unexpired access token, else None."""
    try:
        # Time is the server's clock (a test may move it), not PyJWT's: skip its iat check.
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_iat": False})
    except jwt.PyJWTError:
        return None
    expiry = claims.get("exp_f")
    if claims.get("typ") != "access" or not isinstance(expiry, int | float):
        return None
    if now >= expiry:
        return None
    return Principal(str(claims.get("sub")), str(claims.get("org")))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_refresh_token(conn: sqlite3.Connection, user_id: str, *, now: float) -> str:
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, revoked, expires_at) VALUES (?, ?, 0, ?)",
        (_token_hash(token), user_id, now + REFRESH_TTL_S),
    )
    return token


def use_refresh_token(conn: sqlite3.Connection, token: str, *, now: float) -> str | None:
    """Spend a refresh token: its user id if it was live (it is dead afterwards), else None."""
    row = conn.execute(
        "SELECT user_id, revoked, expires_at FROM refresh_tokens WHERE token_hash = ?",
        (_token_hash(token),),
    ).fetchone()
    if row is None or row["revoked"] or row["expires_at"] <= now:
        return None
    conn.execute(
        "UPDATE refresh_tokens SET revoked = 1 WHERE token_hash = ?", (_token_hash(token),)
    )
    return str(row["user_id"])


def revoke_refresh_tokens(conn: sqlite3.Connection, user_id: str, token: str | None) -> None:
    """Logout: revoke the given refresh token of this user, or all of theirs."""
    if token is None:
        conn.execute("UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ?", (user_id,))
    else:
        conn.execute(
            "UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ? AND token_hash = ?",
            (user_id, _token_hash(token)),
        )
