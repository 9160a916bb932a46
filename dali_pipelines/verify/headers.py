"""The header pass: format (magic number) and size from Pillow's lazy open, completeness from the
tail or declared size, and whether the file can hold as many pixels as its header claims; no pixel
is decoded. Which variants DALI decodes is not judged here: a file whose header cannot show it gets
``needs_decode``, and DALI's own decoder gives the verdict. Only regular files are opened: a FIFO
or a device would block the reader (or never end)."""

from __future__ import annotations

import io
import math
import os
import stat
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
# Huffman-coded JPEG frames (every SOFn but the arithmetic-coded SOF9-SOF15): each 8x8 block of a
# component costs at least one code bit, the DC difference's.
_HUFFMAN = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7)
# Deflate's largest compression ratio (a 258-byte match in two 1-bit codes): a PNG's compressed
# data is at least its raw scanlines / 1032.
_DEFLATE_MAX_RATIO = 1032
# The smallest sizes the two bounds allow are halved before a file is refused: a margin for
# anything they do not count, while a forged header is off by orders of magnitude.
_BOUND_MARGIN = 2
_NON_REGULAR = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
                stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder"}


class Header(NamedTuple):
    """What the header pass found: a reason to refuse the file (or None) and its claimed size."""

    reason: str | None
    pixels: int = 0
    needs_decode: bool = False  # the header cannot vouch for the file: DALI must decode it


class _Frame(NamedTuple):
    """What a JPEG's frame header (SOFn) says, as far as the checks need it."""

    marker: int | None  # SOFn; None when no plain walk of the segments reaches a scan
    scan: int  # where the first scan's data starts
    blocks: int  # 8x8 blocks of the component with the most of them (0: unknown)


def check_path(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """Check the file at ``path`` from its header and tail; every failure is a reason, never raised.

    Opened without blocking and refused unless it is a regular file: opening a FIFO for reading
    waits for a writer forever, and reading a device may never end."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return Header(non_regular_reason(st.st_mode))
            return check_stream(f, st.st_size, max_pixels)
    except OSError as err:
        return Header(os_reason(err))


def non_regular_reason(mode: int) -> str:
    """Why a file that is not a regular one (a FIFO, a device...) is refused, before it is read
    (prefixed ``READ_ERROR``: such results are never cached)."""
    return READ_ERROR + non_regular(mode)


def non_regular(mode: int) -> str:
    """What a file of ``mode`` is, that it is not a regular file, and the fix."""
    kind = _NON_REGULAR.get(stat.S_IFMT(mode), "an unusual file")
    return f"{kind}, not a regular file: reading it can block forever; remove it from the data set"


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
    frame = _jpeg_frame(f) if fmt == "JPEG" else _Frame(None, 0, 0)
    if cut := _cut(fmt, f, head, size, frame.scan):
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
    png_bits = _png_bits_per_pixel(f) if fmt == "PNG" else 0
    if implausible := _too_small(fmt, size, width, height, frame=frame, png_bits=png_bits):
        return Header(implausible)
    vouched = fmt not in _DECODE_FORMATS and (fmt != "JPEG" or frame.marker in _HUFFMAN_DCT)
    return Header(None, width * height, needs_decode=not vouched)


def _too_small(fmt: str, size: int, width: int, height: int, *, frame: _Frame, png_bits: int) -> str | None:
    """Why ``size`` bytes cannot hold the ``width`` x ``height`` image the header claims, where the
    format bounds the bytes per pixel: Huffman-coded JPEG (a code bit per 8x8 block) and PNG
    (deflate's largest ratio). Such a file costs a full-size decode: a forged header, or cut short
    where the end marker survived. Other formats (WebP, BMP's RLE, TIFF, arithmetic-coded JPEG)
    can code a flat image in next to nothing: --max-pixels alone bounds them."""
    if fmt == "JPEG" and frame.marker in _HUFFMAN and frame.blocks:
        least, unit = frame.blocks // 8, "one code bit per 8x8 block"
    elif fmt == "PNG":
        raw = height * (1 + math.ceil(width * max(1, png_bits) / 8))  # a filter byte per row (Adam7: more)
        least, unit = raw // _DEFLATE_MAX_RATIO, "deflate's largest ratio, 1032:1"
    else:
        return None
    if size * _BOUND_MARGIN >= least:
        return None
    return (f"header claims {width}x{height} pixels, but the file holds {size:,} bytes and a complete {fmt} "
            f"that size needs at least {least:,} ({unit}): its header is wrong or its data cut short; "
            "re-encode it or remove it")


def _png_bits_per_pixel(f: BinaryIO) -> int:
    """Bits per pixel from a PNG's IHDR (bit depth times the colour type's channels); 0 if unknown."""
    f.seek(24)
    fields = f.read(2)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(fields[1], 0) if len(fields) == 2 else 0
    return fields[0] * channels if channels else 0


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


def _jpeg_frame(f: BinaryIO) -> _Frame:
    """The frame header and where the first scan's data starts: Pillow parsed the segments but keeps
    neither. The marker is None when no plain walk (no fill bytes) reaches a scan; DALI's decoder
    then decides."""
    f.seek(2)
    frame, blocks = None, 0
    while len(segment := f.read(4)) == 4 and segment[0] == 0xFF:
        marker, length = segment[1], int.from_bytes(segment[2:], "big")
        if marker == 0xDA:
            return _Frame(frame, f.tell() + length - 2, blocks if frame is not None else 0)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn; not DHT, JPG, DAC
            body = f.read(max(0, length - 2))  # precision, height, width, components; 3 bytes each
            frame = marker if len(body) == length - 2 >= 6 and length == 8 + 3 * body[5] else None
            blocks = _most_blocks(body) if frame is not None else 0
            f.seek(-len(body), 1)
        f.seek(length - 2, 1)
    return _Frame(None, 2, 0)


def _most_blocks(body: bytes) -> int:
    """8x8 blocks of the frame's component that has the most (its own sampling, not MCU-padded)."""
    height, width, count = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5]
    factors = [(body[6 + 3 * i + 1] >> 4, body[6 + 3 * i + 1] & 0x0F) for i in range(count)]
    h_max, v_max = max((h for h, _ in factors), default=0), max((v for _, v in factors), default=0)
    if not (h_max and v_max and all(h and v for h, v in factors)):
        return 0  # a zero sampling factor: the decoder refuses the frame
    return max(math.ceil(math.ceil(width * h / h_max) / 8) * math.ceil(math.ceil(height * v / v_max) / 8)
               for h, v in factors)


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
