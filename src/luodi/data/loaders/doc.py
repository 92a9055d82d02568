"""Word 97-2003 .doc loader via the `antiword` command (Debian package `antiword`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from luodi.data.loaders.base import FileRejected, Loaded, loader
from luodi.data.loaders.sections import split_plain

ANTIWORD_TIMEOUT_S = 120
"""antiword reads a normal document in well under a second; this only stops a hang."""


@loader(".doc")
def load_doc(path: Path) -> Loaded:
    """The text antiword extracts, one line per paragraph (tables as "|a|b|" lines), packed
    like .txt: one segment "whole file" or "lines A-B" segments past ~4000 characters.

    Rejects the file when antiword is not installed (the reason says how to install it),
    when it is not a Word 6-2003 document (RTF or a .docx with the wrong suffix say so), or
    when it is encrypted.
    """
    exe = shutil.which("antiword")
    if exe is None:
        raise FileRejected(
            "reading .doc files needs the antiword command: install it with "
            "`sudo apt-get install antiword` (or save the document as .docx)"
        )
    env = dict(os.environ)
    # antiword looks for its mapping files under $HOME/.antiword first and complains on
    # stderr when HOME is unset (services often run without it).
    env.setdefault("HOME", "/nonexistent")
    try:
        done = subprocess.run(
            # -m UTF-8.txt: output UTF-8 so Chinese survives; -w 0: a paragraph per line.
            [exe, "-m", "UTF-8.txt", "-w", "0", str(path)],
            capture_output=True,
            env=env,
            timeout=ANTIWORD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FileRejected(f"antiword did not finish within {ANTIWORD_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise FileRejected(_reason(path, done.returncode, done.stderr.decode("utf-8", "replace")))
    text = done.stdout.decode("utf-8", "replace")
    return Loaded(segments=split_plain(text))


def _reason(path: Path, returncode: int, stderr: str) -> str:
    """A user-facing reason from antiword's stderr (which names the file; drop that)."""
    message = " ".join(stderr.replace(str(path), "").split())
    with open(path, "rb") as fh:
        head = fh.read(4)
    if "Rich Text Format" in message or head == b"{\\rt":
        return "an RTF file named .doc: rename it to .rtf or save it as .docx"
    if head == b"PK\x03\x04":
        return "a .docx file named .doc: rename it to .docx"
    if "Encrypted" in message:
        return "encrypted .doc: save an unprotected copy"
    if "not a Word Document" in message:
        return "not a Word 97-2003 document (antiword cannot read it)"
    return f"antiword could not read it: {message[:200] or f'exit status {returncode}'}"
