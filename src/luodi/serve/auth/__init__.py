"""API keys, teams and roles: who is calling and what they may do."""

from luodi.serve.auth.keys import KeyInfo, KeyStore, Principal, TeamInfo, parse_key
from luodi.serve.auth.roles import ENDPOINTS, ROLE_ENDPOINTS, ROLES, Role, authorize

__all__ = [
    "ENDPOINTS",
    "ROLES",
    "ROLE_ENDPOINTS",
    "KeyInfo",
    "KeyStore",
    "Principal",
    "Role",
    "TeamInfo",
    "authorize",
    "parse_key",
]
