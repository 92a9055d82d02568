"""What each role may do, and the one check every endpoint makes: `authorize`.

Endpoints are named, not pathed, so a route can move without changing permissions:

- inference: `chat.completions`, `completions`, `embeddings`, `models` (list the models)
- `feedback`: rate a served request
- knowledge bases: `kb.search` (list, show and search the team's), `kb.write` (create them,
  add and delete documents, rebuild)
- reading a team's records: `usage.read`, `deployments.read`, `feedback.read`, `logs.read`
- administration: `keys.read`, `keys.write`, `teams.read`, `teams.write`, `deployments.write`,
  `logs.purge`

Roles: a `user` may call the models, search its team's knowledge bases and give feedback; a
`developer` may also change its team's knowledge bases and read its usage and deployments; an
`admin` may do everything, across teams. A key may further be limited to some endpoints
(`endpoints` on the key); that list narrows the role, never widens it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from luodi.errors import BadInputError, PermissionDeniedError

if TYPE_CHECKING:
    from luodi.serve.auth.keys import Principal

Role = Literal["admin", "developer", "user"]
ROLES: tuple[Role, ...] = ("admin", "developer", "user")

INFERENCE = frozenset({"chat.completions", "completions", "embeddings", "models"})
KB_SEARCH = frozenset({"kb.search"})
KB_WRITE = frozenset({"kb.write"})
TEAM_READ = frozenset({"usage.read", "deployments.read"})
ADMIN_ONLY = frozenset(
    {
        "feedback.read",
        "logs.read",
        "logs.purge",
        "keys.read",
        "keys.write",
        "teams.read",
        "teams.write",
        "deployments.write",
    }
)
ENDPOINTS = INFERENCE | {"feedback"} | KB_SEARCH | KB_WRITE | TEAM_READ | ADMIN_ONLY
"""Every endpoint name `authorize` knows."""

ROLE_ENDPOINTS: dict[str, frozenset[str]] = {
    "user": INFERENCE | {"feedback"} | KB_SEARCH,
    "developer": INFERENCE | {"feedback"} | KB_SEARCH | KB_WRITE | TEAM_READ,
    "admin": ENDPOINTS,
}


def check_role(role: str) -> Role:
    """`role` if it is one of admin, developer, user; BadInputError otherwise."""
    if role not in ROLES:
        raise BadInputError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def check_endpoints(endpoints: list[str] | None) -> list[str] | None:
    """Validate a key's endpoint allow list (None = all its role allows)."""
    if endpoints is None:
        return None
    unknown = sorted(set(endpoints) - ENDPOINTS)
    if unknown:
        raise BadInputError(
            f"unknown endpoint(s) {', '.join(unknown)}; known: {', '.join(sorted(ENDPOINTS))}"
        )
    if not endpoints:
        raise BadInputError("an empty endpoint list would make the key useless; omit it instead")
    return sorted(set(endpoints))


def authorize(principal: Principal, endpoint: str, team: str | None = None) -> None:
    """Allow `principal` to call `endpoint` (on `team`'s records when given) or raise
    PermissionDeniedError (403) saying what is missing.

    Admins may act on any team; everyone else only on their own. An endpoint name outside
    ENDPOINTS is a bug in the caller (ValueError), not a client error.
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"authorize: unknown endpoint {endpoint!r}")
    if endpoint not in ROLE_ENDPOINTS[principal.role]:
        raise PermissionDeniedError(
            f"key {principal.key_id} has role {principal.role!r}, which may not use {endpoint}"
        )
    if principal.endpoints is not None and endpoint not in principal.endpoints:
        raise PermissionDeniedError(
            f"key {principal.key_id} is limited to {', '.join(principal.endpoints)}; "
            f"it may not use {endpoint}"
        )
    if team is not None and principal.role != "admin" and team != principal.team:
        raise PermissionDeniedError(
            f"key {principal.key_id} belongs to team {principal.team!r}; "
            f"only an admin may act on team {team!r}"
        )
