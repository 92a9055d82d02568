"""Teams and API keys: create (the secret is shown once), list, revoke, authenticate.

A key reads `ld-<key_id>-<secret>`: `key_id` (8 characters of [a-z0-9]) names the row and is
not secret (it appears in usage reports and logs); `secret` is 32 random bytes, URL-safe base64.
The database holds `salt` and `sha256(salt + secret)` only. A slow KDF (bcrypt, scrypt) exists
to make guessing a *low-entropy* password expensive; a 256-bit random secret cannot be guessed
either way, so a single SHA-256 is as safe here and costs a microsecond instead of ~100 ms per
request. Hashes are compared with `hmac.compare_digest` (constant time).

Hot path: a successful authentication is cached in memory for `cache_ttl_s` seconds, keyed by
sha256 of the presented key (the secret itself is never kept), so a request costs a hash and a
dict lookup, no query. Revoking a key in this process drops its cache entries at once; another
gateway replica keeps accepting it for at most `cache_ttl_s` seconds (its cache entry expires).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from luodi.errors import AuthError, BadInputError, ConflictError, NotFoundError
from luodi.serve.auth.roles import Role, check_endpoints, check_role
from luodi.store import Store
from luodi.store.artifacts import check_name
from luodi.store.models import ApiKeyRow, TeamRow

PREFIX = "ld-"
KEY_ID_LEN = 8
_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_BYTES = 32
# a well-formed dummy so an unknown key id costs the same hash and compare as a known one
_DUMMY_SALT = "0" * 32
_DUMMY_HASH = "0" * 64


class Principal(BaseModel):
    """The caller a request was authenticated as: its key, team, role and limits."""

    model_config = ConfigDict(frozen=True)

    key_id: str = Field(description="The key's public id (the part after `ld-`).")
    team: str = Field(description="The team the key belongs to.")
    role: Role = Field(description="admin, developer or user (see luodi.serve.auth.roles).")
    name: str = Field(description="A label for the key, e.g. who or what uses it.")
    endpoints: list[str] | None = Field(
        default=None, description="Endpoints the key is limited to (None: all its role allows)."
    )
    rpm: int | None = Field(default=None, description="Requests per minute (None: unlimited).")
    tokens_per_day: int | None = Field(
        default=None, description="Prompt + completion tokens per UTC day (None: unlimited)."
    )
    tokens_per_month: int | None = Field(
        default=None, description="Prompt + completion tokens per UTC month (None: unlimited)."
    )


class KeyInfo(Principal):
    """A key as listed for admins: the principal plus its history (never the secret)."""

    created_at: datetime = Field(description="When the key was created (UTC).")
    created_by: str = Field(description="Who created it.")
    revoked_at: datetime | None = Field(default=None, description="When it was revoked.")
    last_used_at: datetime | None = Field(
        default=None, description="Time of its last recorded request (written by the recorder)."
    )

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


class TeamInfo(BaseModel):
    """A team and how many active keys it has."""

    name: str = Field(description="Team name.")
    created_at: datetime = Field(description="When it was created (UTC).")
    created_by: str = Field(description="Who created it.")
    active_keys: int = Field(default=0, description="Keys of the team not revoked.")


def utc(dt: datetime | None) -> datetime | None:
    """`dt` as an aware UTC datetime (SQLite returns naive values, stored in UTC)."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256((salt + secret).encode()).hexdigest()


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and value <= 0:
        raise BadInputError(f"{name} must be a positive number (omit it for no limit)")
    return value


def parse_key(presented: str) -> tuple[str, str]:
    """Split `ld-<key_id>-<secret>` into (key_id, secret); AuthError when malformed."""
    sep = len(PREFIX) + KEY_ID_LEN
    if (
        not presented.startswith(PREFIX)
        or len(presented) <= sep + 1
        or presented[sep] != "-"
        or len(presented) > 200
    ):
        raise AuthError(
            "invalid API key: expected `ld-<key id>-<secret>` as `luodi keys create` printed it"
        )
    return presented[len(PREFIX) : sep], presented[sep + 1 :]


class KeyStore:
    """Teams and API keys over the store's database (SQLite or PostgreSQL alike)."""

    def __init__(
        self,
        store: Store,
        cache_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_cached: int = 10_000,
    ) -> None:
        self.store = store
        self.cache_ttl_s = cache_ttl_s
        self.max_cached = max_cached
        self._clock = clock
        self._session = sessionmaker(store.engine, expire_on_commit=False)
        # sha256(presented key) -> (principal, monotonic expiry)
        self._cache: dict[bytes, tuple[Principal, float]] = {}

    # -- teams ------------------------------------------------------------------------------
    def create_team(self, name: str, by: str | None = None) -> TeamInfo:
        """Create team `name`; ConflictError if it exists."""
        check_name(name)
        row = TeamRow(
            name=name, created_at=datetime.now(UTC), created_by=by or self.store.settings.username
        )
        try:
            with self._session.begin() as s:
                s.add(row)
        except IntegrityError:
            raise ConflictError(f"team {name!r} already exists") from None
        return TeamInfo(name=name, created_at=row.created_at, created_by=row.created_by)

    def list_teams(self) -> list[TeamInfo]:
        """All teams by name, with their count of active keys."""
        active = (
            select(ApiKeyRow.team, func.count().label("n"))
            .where(ApiKeyRow.revoked_at.is_(None))
            .group_by(ApiKeyRow.team)
            .subquery()
        )
        q = (
            select(TeamRow, active.c.n)
            .outerjoin(active, active.c.team == TeamRow.name)
            .order_by(TeamRow.name)
        )
        with self._session() as s:
            return [
                TeamInfo(
                    name=t.name,
                    created_at=utc(t.created_at),
                    created_by=t.created_by,
                    active_keys=n or 0,
                )
                for t, n in s.execute(q).all()
            ]

    def _require_team(self, s, team: str) -> None:  # noqa: ANN001 - a Session
        if s.get(TeamRow, team) is None:
            known = ", ".join(s.execute(select(TeamRow.name).order_by(TeamRow.name)).scalars())
            raise NotFoundError(
                f"team {team!r} not found (known: {known or 'none yet'}); create it with "
                f"`luodi teams create {team}`"
            )

    # -- keys -------------------------------------------------------------------------------
    def create_key(
        self,
        team: str,
        role: str,
        name: str,
        endpoints: list[str] | None = None,
        rpm: int | None = None,
        tokens_per_day: int | None = None,
        tokens_per_month: int | None = None,
        by: str | None = None,
    ) -> tuple[Principal, str]:
        """Create a key for existing `team`: (its principal, the full key `ld-<id>-<secret>`).

        The full key is returned only here; the database keeps a salted hash of the secret.
        """
        role = check_role(role)
        endpoints = check_endpoints(endpoints)
        name = name.strip()
        if not name or len(name) > 200:
            raise BadInputError("a key needs a name of 1 to 200 characters (who or what uses it)")
        for field, value in (
            ("rpm", rpm),
            ("tokens_per_day", tokens_per_day),
            ("tokens_per_month", tokens_per_month),
        ):
            _positive(field, value)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        salt = secrets.token_hex(16)
        for _ in range(5):  # 36^8 ids: a collision is rare; retry it rather than fail
            key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LEN))
            row = ApiKeyRow(
                key_id=key_id,
                team=team,
                role=role,
                name=name,
                salt=salt,
                hash=_hash(salt, secret),
                endpoints=endpoints,
                rpm=rpm,
                tokens_per_day=tokens_per_day,
                tokens_per_month=tokens_per_month,
                created_at=datetime.now(UTC),
                created_by=by or self.store.settings.username,
            )
            try:
                with self._session.begin() as s:
                    self._require_team(s, team)
                    s.add(row)
            except IntegrityError:
                continue
            return _principal(row), f"{PREFIX}{key_id}-{secret}"
        raise ConflictError("could not allocate a unique key id; try again")

    def get_key(self, key_id: str) -> KeyInfo:
        """The key `key_id` (revoked or not); NotFoundError if there is none."""
        with self._session() as s:
            row = s.get(ApiKeyRow, key_id)
        if row is None:
            raise NotFoundError(f"no API key with id {key_id!r} (see `luodi keys list`)")
        return _info(row)

    def list_keys(self, team: str | None = None, include_revoked: bool = True) -> list[KeyInfo]:
        """Keys (of `team` when given), oldest first; secrets are never listed."""
        q = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.key_id)
        if team is not None:
            q = q.where(ApiKeyRow.team == team)
        if not include_revoked:
            q = q.where(ApiKeyRow.revoked_at.is_(None))
        with self._session() as s:
            return [_info(r) for r in s.execute(q).scalars()]

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke `key_id` (idempotent); this process stops accepting it at once, other
        replicas within `cache_ttl_s` seconds."""
        with self._session.begin() as s:
            s.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        self._cache = {d: e for d, e in self._cache.items() if e[0].key_id != key_id}
        return self.get_key(key_id)

    def authenticate(self, presented: str) -> Principal:
        """The principal of an API key `ld-<id>-<secret>`; AuthError (401) when the key is
        malformed, unknown, wrong or revoked. Cached for `cache_ttl_s` after a success."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        hit = self._cache.get(digest)
        now = self._clock()
        if hit is not None and hit[1] > now:
            return hit[0]
        key_id, secret = parse_key(presented)
        with self._session() as s:
            row = s.get(ApiKeyRow, key_id)
        salt, stored = (row.salt, row.hash) if row is not None else (_DUMMY_SALT, _DUMMY_HASH)
        matches = hmac.compare_digest(_hash(salt, secret), stored)
        if row is None or not matches:
            raise AuthError("invalid API key")
        if row.revoked_at is not None:
            raise AuthError(f"API key {key_id} was revoked; ask an admin for a new one")
        principal = _principal(row)
        if len(self._cache) >= self.max_cached:
            self._cache = {d: e for d, e in self._cache.items() if e[1] > now}
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
        self._cache[digest] = (principal, now + self.cache_ttl_s)
        return principal

    def forget(self) -> None:
        """Drop every cached authentication (e.g. after revoking keys in another process)."""
        self._cache.clear()


def _principal(row: ApiKeyRow) -> Principal:
    return Principal(
        key_id=row.key_id,
        team=row.team,
        role=row.role,
        name=row.name,
        endpoints=row.endpoints,
        rpm=row.rpm,
        tokens_per_day=row.tokens_per_day,
        tokens_per_month=row.tokens_per_month,
    )


def _info(row: ApiKeyRow) -> KeyInfo:
    return KeyInfo(
        **_principal(row).model_dump(),
        created_at=utc(row.created_at),
        created_by=row.created_by,
        revoked_at=utc(row.revoked_at),
        last_used_at=utc(row.last_used_at),
    )
