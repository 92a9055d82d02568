"""The knowledge-base API under /v1/knowledge-bases: list, create, show, upload and delete
documents, search; every knowledge base belongs to a team and only that team's keys (and
admins) see it."""
