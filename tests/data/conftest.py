"""Fixtures for the data-stage tests: a writer of real Word 97 (.doc) binary files.

No Python library writes .doc, and LibreOffice is ~260 MB, so `write_word97` builds the
smallest file antiword reads through its normal Word 8 path: an OLE2 compound file (header,
one FAT sector, one directory sector) holding a "WordDocument" stream (a Word 97 FIB, nFib
193, followed by the text as UTF-16LE) and a "1Table" stream (an empty stylesheet and a piece
table with one Unicode piece). Both streams are padded to 4096 bytes so they live in regular
sectors and no mini stream is needed. Layouts follow [MS-CFB] and [MS-DOC].
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

SECTOR = 512
END_OF_CHAIN, FREE_SECT, FAT_SECT, NO_STREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
TEXT_OFFSET = 0x400  # where the text starts in the WordDocument stream, after the FIB


def _pad(data: bytes, size: int) -> bytes:
    return data + b"\0" * (size - len(data))


def _sectors(data: bytes, minimum: int = 4096) -> bytes:
    size = max(len(data), minimum)
    return _pad(data, -(-size // SECTOR) * SECTOR)


def _fib(ccp_text: int, text_bytes: int, stsh_len: int, clx_len: int, stream_len: int) -> bytes:
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
    entry = bytearray(128)
    raw = name.encode("utf-16-le") + b"\0\0" if name else b""
    entry[: len(raw)] = raw
    # name length, type (5 root, 2 stream, 0 unused), colour black, left, right, child
    struct.pack_into("<HBBIII", entry, 0x40, len(raw), kind, 1, left, NO_STREAM, child)
    struct.pack_into("<II", entry, 0x74, start, size)
    return bytes(entry)


def write_word97(path: Path, paragraphs: Sequence[str]) -> Path:
    """Write `paragraphs` (one per string) to `path` as a Word 97 .doc; returns `path`."""
    text = "".join(p + "\r" for p in paragraphs)  # \r ends a paragraph in Word
    body = text.encode("utf-16-le")
    # STSH: cbStshi=18, then STSHI with cstd=0 styles and cbSTDBaseInFile=10
    stsh = struct.pack("<HHH", 18, 0, 10) + bytes(14)
    # Clx = Pcdt: 0x02, lcb, PlcPcd (CPs 0..ccp, one PCD whose fc has bit 30 clear: UTF-16)
    plc = struct.pack("<II", 0, len(text)) + struct.pack("<HIH", 0, TEXT_OFFSET, 0)
    clx = b"\x02" + struct.pack("<I", len(plc)) + plc
    stream_len = len(_sectors(_pad(b"", TEXT_OFFSET) + body))
    fib = _fib(len(text), len(body), len(stsh), len(clx), stream_len)
    word = _sectors(_pad(fib, TEXT_OFFSET) + body)
    table = _sectors(stsh + clx)

    fat = [FAT_SECT, END_OF_CHAIN]  # sector 0: the FAT itself; sector 1: the directory
    starts = []
    for stream in (word, table):
        first = len(fat)
        count = len(stream) // SECTOR
        starts.append(first)
        fat += [first + i + 1 for i in range(count - 1)] + [END_OF_CHAIN]
    assert len(fat) <= SECTOR // 4, "text too long for this one-FAT-sector writer"
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
    struct.pack_into("<IIIIIIII", header, 0x2C, 1, 1, 0, 4096, END_OF_CHAIN, 0, END_OF_CHAIN, 0)
    struct.pack_into("<109I", header, 0x4C, 0, *([FREE_SECT] * 108))
    path.write_bytes(bytes(header) + struct.pack("<128I", *fat) + directory + word + table)
    return path


@pytest.fixture
def make_doc(tmp_path: Path) -> Callable[[str, Sequence[str]], Path]:
    """Factory: make_doc("name.doc", paragraphs) writes a real Word 97 file in tmp_path."""
    return lambda name, paragraphs: write_word97(tmp_path / name, paragraphs)
