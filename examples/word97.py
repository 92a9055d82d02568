"""A minimal writer of real Word 97 (.doc) binary files, pure standard library.

No Python library writes .doc, and LibreOffice is ~260 MB, so `write_word97` builds the
smallest file antiword reads through its normal Word 8 path. It is used by
examples/make_examples.py (the sample notice) and by the loader tests (tests/data/conftest.py).

What it writes (layouts follow [MS-CFB] and [MS-DOC]):

- an OLE2 compound file, version 3 (512-byte sectors): the header, one FAT sector, one
  directory sector (Root Entry, "WordDocument", "1Table") and the two streams;
- "WordDocument": a Word 97 FIB (nFib 193, language zh-CN, fWhichTblStm set so the table stream
  is "1Table") followed at offset 0x400 by the text as UTF-16LE, each paragraph ended by \\r;
- "1Table": an empty stylesheet (STSH) and a Clx holding a piece table with one Unicode piece
  that covers the whole text.

Both streams are padded to at least 4096 bytes (the mini-stream cutoff) so they live in
regular sectors and no mini stream or mini FAT is needed. Only plain paragraphs are supported:
no formatting runs (CHPX/PAPX), fonts, tables, fields, headers or summary information. The
single FAT sector limits the text to 29,696 UTF-16 code units, paragraph marks included.
Characters outside the BMP are written correctly, but antiword prints them as U+FFFD.

Why the empty stylesheet: antiword reads the STSH unconditionally from fcStshf/lcbStshf and
takes the style count and default font from fixed offsets of its header without checking
lcbStshf. With no stylesheet at all it reads past a one-byte buffer (valgrind: "Invalid read
of size 2"), so the output depends on whatever memory follows; a valid STSH with zero styles
makes it fall back to its default style and font, deterministically.

The output is a pure function of the paragraphs: no timestamps, no class IDs, no randomness,
so regenerating a file gives the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

SECTOR = 512
MINI_CUTOFF = 4096  # streams smaller than this would have to live in the mini stream
END_OF_CHAIN, FREE_SECT, FAT_SECT, NO_STREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
TEXT_OFFSET = 0x400  # where the text starts in the WordDocument stream, after the FIB
# One FAT sector maps 128 sectors: itself, the directory, 8 for "1Table", the rest "WordDocument"
MAX_CODE_UNITS = ((SECTOR // 4 - 2 - MINI_CUTOFF // SECTOR) * SECTOR - TEXT_OFFSET) // 2


def _pad(data: bytes, size: int) -> bytes:
    """`data` followed by zero bytes up to `size`."""
    return data + b"\0" * (size - len(data))


def _sectors(data: bytes, minimum: int = MINI_CUTOFF) -> bytes:
    """`data` padded to a whole number of sectors and at least `minimum` bytes."""
    size = max(len(data), minimum)
    return _pad(data, -(-size // SECTOR) * SECTOR)


def _fib(ccp_text: int, text_bytes: int, stsh_len: int, clx_len: int, stream_len: int) -> bytes:
    """The File Information Block: FibBase, the 16- and 32-bit arrays, 93 fc/lcb pairs."""
    fib = bytearray(0x384)
    # FibBase: wIdent, nFib (Word 97), unused, lid (zh-CN)
    struct.pack_into("<HHHH", fib, 0x00, 0xA5EC, 0x00C1, 0, 0x0804)
    struct.pack_into("<H", fib, 0x0A, 1 << 9)  # fWhichTblStm: the table stream is "1Table"
    struct.pack_into("<H", fib, 0x0C, 0x00BF)  # nFibBack
    struct.pack_into("<II", fib, 0x18, TEXT_OFFSET, TEXT_OFFSET + text_bytes)  # fcMin, fcMac
    struct.pack_into("<H", fib, 0x20, 14)  # csw: count of 16-bit values that follow
    struct.pack_into("<H", fib, 0x3E, 22)  # cslw: count of 32-bit values that follow
    struct.pack_into("<I", fib, 0x40, stream_len)  # cbMac
    struct.pack_into("<I", fib, 0x4C, ccp_text)  # ccpText
    struct.pack_into("<H", fib, 0x98, 0x5D)  # cbRgFcLcb: 93 fc/lcb pairs
    struct.pack_into("<II", fib, 0xA2, 0, stsh_len)  # fcStshf, lcbStshf
    struct.pack_into("<II", fib, 0x1A2, stsh_len, clx_len)  # fcClx, lcbClx
    return bytes(fib)


def _dir_entry(
    name: str, kind: int, start: int, size: int, left: int = NO_STREAM, child: int = NO_STREAM
) -> bytes:
    """One 128-byte compound-file directory entry (kind 5 root, 2 stream, 0 unused)."""
    entry = bytearray(128)
    raw = name.encode("utf-16-le") + b"\0\0" if name else b""
    entry[: len(raw)] = raw
    # name length, type, colour black, left sibling, right sibling, child
    struct.pack_into("<HBBIII", entry, 0x40, len(raw), kind, 1, left, NO_STREAM, child)
    struct.pack_into("<II", entry, 0x74, start, size)
    return bytes(entry)


def word97_bytes(paragraphs: Sequence[str]) -> bytes:
    """The bytes of a Word 97 .doc holding `paragraphs`, one paragraph per string.

    antiword (`antiword -m UTF-8.txt -w 0`) prints them back one per line. Raises ValueError
    when a paragraph contains a line or paragraph break (\\r, \\n: Word would split it) or
    when the text does not fit the single FAT sector (29,696 UTF-16 code units with the
    paragraph marks).
    """
    if any("\r" in p or "\n" in p for p in paragraphs):
        raise ValueError("a paragraph must not contain \\r or \\n: pass one string per paragraph")
    text = "".join(p + "\r" for p in paragraphs)  # \r ends a paragraph in Word
    body = text.encode("utf-16-le")
    cps = len(body) // 2  # character positions count UTF-16 code units, not code points
    # STSH: cbStshi=18, then an STSHI with cstd=0 styles and cbSTDBaseInFile=10
    stsh = struct.pack("<HHH", 18, 0, 10) + bytes(14)
    # Clx = Pcdt: 0x02, lcb, PlcPcd (CPs 0..ccp, one PCD whose fc has bit 30 clear: UTF-16)
    plc = struct.pack("<II", 0, cps) + struct.pack("<HIH", 0, TEXT_OFFSET, 0)
    clx = b"\x02" + struct.pack("<I", len(plc)) + plc
    stream_len = len(_sectors(_pad(b"", TEXT_OFFSET) + body))
    fib = _fib(cps, len(body), len(stsh), len(clx), stream_len)
    word = _sectors(_pad(fib, TEXT_OFFSET) + body)
    table = _sectors(stsh + clx)

    fat = [FAT_SECT, END_OF_CHAIN]  # sector 0: the FAT itself; sector 1: the directory
    starts = []
    for stream in (word, table):
        first = len(fat)
        count = len(stream) // SECTOR
        starts.append(first)
        fat += [first + i + 1 for i in range(count - 1)] + [END_OF_CHAIN]
    if len(fat) > SECTOR // 4:
        raise ValueError(
            f"text too long for this one-FAT-sector writer: {cps} UTF-16 code units "
            f"(at most {MAX_CODE_UNITS})"
        )
    fat += [FREE_SECT] * (SECTOR // 4 - len(fat))

    directory = (
        _dir_entry("Root Entry", 5, END_OF_CHAIN, 0, child=1)
        + _dir_entry("WordDocument", 2, starts[0], len(word), left=2)
        + _dir_entry("1Table", 2, starts[1], len(table))
        + _dir_entry("", 0, 0, 0)
    )
    header = bytearray(SECTOR)
    header[:8] = bytes.fromhex("D0CF11E0A1B11AE1")
    # minor/major version, byte order, sector shift (512), mini sector shift (64)
    struct.pack_into("<HHHHH", header, 0x18, 0x3E, 3, 0xFFFE, 9, 6)
    # FAT sectors, first directory sector, transaction, mini cutoff, mini FAT, DIFAT
    struct.pack_into(
        "<IIIIIIII", header, 0x2C, 1, 1, 0, MINI_CUTOFF, END_OF_CHAIN, 0, END_OF_CHAIN, 0
    )
    struct.pack_into("<109I", header, 0x4C, 0, *([FREE_SECT] * 108))
    return bytes(header) + struct.pack("<128I", *fat) + directory + word + table


def write_word97(path: Path, paragraphs: Sequence[str]) -> Path:
    """Write `paragraphs` (one per string) to `path` as a Word 97 .doc; returns `path`.

    Same contract and errors as `word97_bytes`.
    """
    path.write_bytes(word97_bytes(paragraphs))
    return path
