"""Content hashes of files and artifact folders (sha256)."""

from __future__ import annotations

import hashlib
from pathlib import Path

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_dir(root: Path) -> str:
    """Hash of a folder's content: sorted relative paths with their file hashes.

    The manifest is left out, so the hash describes the payload and can be written into it.
    """
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        rel = p.relative_to(root).as_posix()
        if rel == MANIFEST:
            continue
        h.update(f"{rel}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()
