"""The metadata store: versioned artifacts with lineage, on SQLite or any SQLAlchemy database."""

from luodi.store.artifacts import ArtifactInfo, Draft, LineageNode, ParentRef, Store, parse_ref

__all__ = ["ArtifactInfo", "Draft", "LineageNode", "ParentRef", "Store", "parse_ref"]
