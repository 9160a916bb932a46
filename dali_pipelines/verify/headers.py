"""The header pass: format (magic number) and size from Pillow's lazy open, completeness from the
tail or declared size; no pixel is decoded. Which variants DALI decodes is not judged here: a file
whose header cannot show it gets ``needs_decode``, and DALI's own decoder gives the verdict."""

from __future__ import annotations

import io
import os
import struct
from typing import BinaryIO, NamedTuple

from PIL import Image

# PIL's own hard limit (2 x Image.MAX_IMAGE_PIXELS): about 13400 x 13400, 0.5 GB as RGB.
DEFAULT_MAX_PIXELS = 178_956_970
# The formats fn.decoders.image documents, by Pillow's names; any other format is refused.
DALI_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "PPM", "JPEG2000")
# No end marker shows whether these are complete, and their many variants are DALI's to judge.
_DECODE_FORMATS = ("TIFF", "PPM", "JPEG2000")
# JPEG frames every camera and encoder writes: Huffman-coded DCT (SOF0-2). DALI judges the others.
_HUFFMAN_DCT = (0xC0, 0xC1, 0xC2)
_TAIL_BYTES = 4096  # where the end marker is looked for first; data may follow it (then: a scan)
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its constant CRC
READ_ERROR = "cannot read: "


class Header(NamedTuple):
    """What the header pass found: a reason to refuse the file (or None) and its claimed size."""

    reason: str | None
    pixels: int = 0
    needs_decode: bool = False  # the header cannot vouch for the file: DALI must decode it


def check_path(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """Check the file at ``path`` from its header and tail; every failure is a reason, never raised."""
    try:
        with open(path, "rb") as f:
            return check_stream(f, os.fstat(f.fileno()).st_size, max_pixels)
    except OSError as err:
        return Header(os_reason(err))


def check_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """``check_path`` for an image held in memory (a member of a tar shard)."""
    return check_stream(io.BytesIO(data), len(data), max_pixels)


def os_reason(err: OSError) -> str:
    """A read error as a reason (prefixed ``READ_ERROR``: such results are never cached)."""
    fixes = {PermissionError: "permission denied; make it readable (chmod a+r) or remove it",
             FileNotFoundError: "file not found (a dangling symlink?); remove it from the data set"}
    return READ_ERROR + fixes.get(type(err), err.strerror or str(err))


def check_stream(f: BinaryIO, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """Check the ``size``-byte file ``f`` (seekable: a local file, or ranged reads of an object).
    Reads its first bytes, a JPEG's segment headers and its tail; a read error raises OSError."""
    if size == 0:
        return Header("empty file (0 bytes)")
    head = f.read(16)
    fmt = _identify(head)
    if fmt is None:
        return Header(f"not an image (content starts with {head[:12]!r}); remove it or convert it to JPEG")
    if fmt not in DALI_FORMATS:
        return Header(f"{fmt} content: DALI does not decode {fmt}; convert it to JPEG or PNG")
    frame, scan = _jpeg_frame(f) if fmt == "JPEG" else (None, 0)
    if cut := _cut(fmt, f, head, size, scan):
        return Header(cut)
    try:
        f.seek(0)
        width, height = Image.OPEN[fmt][0](f, "").size  # the plugin, not Image.open: our pixel limit
    except (SyntaxError, OSError, ValueError, struct.error, Image.DecompressionBombError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise  # a read error, not a bad header
        return Header(f"unreadable {fmt} header ({err}): damaged or an unusual variant; re-encode it")
    if width * height > max_pixels:
        return Header(f"header claims {width}x{height} = {width * height:,} pixels, over the limit of "
                      f"{max_pixels:,} (a decompression bomb?); raise --max-pixels if it is real")
    vouched = fmt not in _DECODE_FORMATS and (fmt != "JPEG" or frame in _HUFFMAN_DCT)
    return Header(None, width * height, needs_decode=not vouched)


def _identify(head: bytes) -> str | None:
    """Pillow's name for the format whose magic number ``head`` starts with, or None."""
    Image.init()  # registers every plugin (once)
    for fmt in (*DALI_FORMATS, *Image.ID):  # the usual formats first: each test costs a call
        accept = Image.OPEN.get(fmt, (None, None))[1]
        try:
            if accept is not None and accept(head):  # a str answer: this format, but Pillow lacks support
                return fmt
        except struct.error:  # DIB's test, given only a few bytes
            continue
    return None


def _jpeg_frame(f: BinaryIO) -> tuple[int | None, int]:
    """(SOFn marker, where the first scan's data starts): Pillow parsed the segments but keeps neither.
    The marker is None when no plain walk (no fill bytes) reaches a scan; DALI's decoder then decides."""
    f.seek(2)
    frame = None
    while len(segment := f.read(4)) == 4 and segment[0] == 0xFF:
        marker, length = segment[1], int.from_bytes(segment[2:], "big")
        if marker == 0xDA:
            return frame, f.tell() + length - 2
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn; not DHT, JPG, DAC
            body = f.read(6)  # precision, height, width, components; 3 bytes per component follow
            frame = marker if len(body) == 6 and length == 8 + 3 * body[5] else None
            f.seek(-len(body), 1)
        f.seek(length - 2, 1)
    return None, 2


def _cut(fmt: str, f: BinaryIO, head: bytes, size: int, scan: int) -> str | None:
    """Why the file is incomplete (its end marker is missing, or it is shorter than declared)."""
    # In JPEG scan data 0xFF is followed by 0x00 or a restart marker: FF D9 there ends the image.
    if fmt == "JPEG" and not _has_end(f, size, b"\xff\xd9", scan):
        return "truncated JPEG: no end-of-image marker (FF D9); the file was cut short"
    if fmt == "PNG" and not _has_end(f, size, _PNG_END, 8):
        return "truncated PNG: no IEND chunk at the end; the file was cut short"
    if fmt == "WEBP" and int.from_bytes(head[4:8], "little") + 8 > size:
        return "truncated WebP: the file is shorter than its RIFF header says"
    if fmt == "BMP" and int.from_bytes(head[2:6], "little") > size:
        return "truncated BMP: the file is shorter than its header says"
    return None


def _has_end(f: BinaryIO, size: int, marker: bytes, start: int) -> bool:
    """Whether ``marker`` is in the tail, else anywhere after ``start`` (data may follow the end)."""
    f.seek(max(start, size - _TAIL_BYTES))
    if marker in f.read():
        return True
    f.seek(start)
    carry = b""
    while block := f.read(1 << 20):
        if marker in carry + block:
            return True
        carry = block[-(len(marker) - 1):]
    return False
