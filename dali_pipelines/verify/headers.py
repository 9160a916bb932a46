"""Header-only image checks: what a file claims to be, read without decoding a pixel.

Each check reads the few bytes a decoder would look at first (magic number, JPEG frame
header, PNG IHDR, RIFF/BMP sizes) plus the file's tail, and returns why DALI 2.4 would fail
on it, or None. The accept/reject rules come from decoding each kind with DALI 2.4's CPU
decoder (``fn.decoders.image``); see ``tests/test_verify.py`` for the kinds and evidence.

What a header pass can see: empty files, content that is not an image, formats and JPEG
modes DALI cannot decode, absurd dimensions, and truncation that cuts off the end of a JPEG,
PNG, WebP or BMP. What it cannot see: damage inside the compressed data, or a cut TIFF,
PNM or JPEG 2000; those need a full decode (``deep=True`` in ``dali_pipelines.verify``).
"""

from __future__ import annotations

import struct
import threading
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

# PIL's own hard limit (2 x Image.MAX_IMAGE_PIXELS): about 13400 x 13400, 0.5 GB as RGB.
DEFAULT_MAX_PIXELS = 178_956_970

# JPEG frame markers (SOFn). DALI decodes baseline, extended, progressive, and arithmetic-coded
# files (its libjpeg-turbo has arithmetic decoding); lossless and hierarchical ones fail.
_SOF_OK = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive",
           0xC9: "arithmetic", 0xCA: "progressive arithmetic"}
_SOF_LOSSLESS = {0xC3, 0xCB}
_SOF_HIERARCHICAL = {0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length field
_SOS, _EOI = 0xDA, 0xD9
_MAX_SEGMENTS = 4096  # a real header has a few dozen; more means garbage
# Where the end marker must be found. In JPEG entropy-coded data 0xFF is always followed by
# 0x00 or a restart marker, so FF D9 in the tail can only be the real end of image.
_TAIL_BYTES = 65536

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}

# Formats DALI 2.4 decodes that PIL can read the header of (dimensions only).
_PIL_FORMATS = ("BMP", "TIFF", "WEBP", "PPM", "JPEG2000")
_pil_lock = threading.Lock()  # warnings.catch_warnings is process-wide state


@dataclass(frozen=True)
class Header:
    """What a header check found: a reason to refuse the file (or None) and its claimed size."""

    reason: str | None
    width: int = 0
    height: int = 0


def check_header(f: BinaryIO, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """Check an open binary file of ``size`` bytes from its header and tail, decoding nothing."""
    if size == 0:
        return Header("empty file (0 bytes)")
    head = f.read(16)
    if head.startswith(b"\xff\xd8"):
        header = _jpeg_header(f, size)
    elif head.startswith(_PNG_SIGNATURE):
        header = _png_header(f, size)
    else:
        header = _other_header(f, size, head)
    pixels = header.width * header.height
    if header.reason is None and pixels > max_pixels:
        return Header(f"header claims {header.width}x{header.height} = {pixels:,} pixels, over the "
                      f"limit of {max_pixels:,} (a decompression bomb?); raise --max-pixels if it "
                      "is real", header.width, header.height)
    return header


def _jpeg_header(f: BinaryIO, size: int) -> Header:
    """Walk JPEG marker segments up to the first scan; then look for the end marker."""
    f.seek(2)
    frame: tuple[int, int, int, int, int] | None = None  # marker, precision, height, width, comps
    for _ in range(_MAX_SEGMENTS):
        marker = _next_marker(f)
        if marker is None:
            return Header("truncated or corrupt JPEG header (file ends or garbage before the image data)")
        if marker in _STANDALONE:
            continue
        if marker == _EOI:
            return Header("JPEG has no image data (end marker before any scan)")
        raw = f.read(2)
        length = struct.unpack(">H", raw)[0] if len(raw) == 2 else 0
        if length < 2:
            return Header("truncated or corrupt JPEG header (bad segment length)")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            body = f.read(6)
            if len(body) < 6:
                return Header("truncated JPEG: file ends inside the frame header")
            frame = (marker, *struct.unpack(">BHHB", body))
            if length < 8 + 3 * frame[4]:  # 3 bytes per component follow the 6 read here
                return Header(f"corrupt JPEG header: frame header (SOF) length {length} is too short "
                              f"for {frame[4]} components")
            f.seek(length - 8, 1)
        elif marker == _SOS:
            if frame is None:
                return Header("corrupt JPEG: image data before any frame header (SOF)")
            return _jpeg_frame_and_tail(f, size, frame)
        else:
            f.seek(length - 2, 1)
    return Header("corrupt JPEG header: too many segments before the image data")


def _next_marker(f: BinaryIO) -> int | None:
    """The next marker code; None at end of file or when no 0xFF starts the next segment."""
    byte = f.read(1)
    if byte != b"\xff":
        return None
    while byte == b"\xff":  # any number of 0xFF fill bytes may precede a marker code
        byte = f.read(1)
    return byte[0] if byte else None


def _jpeg_frame_and_tail(f: BinaryIO, size: int, frame: tuple[int, int, int, int, int]) -> Header:
    """Judge the frame header (coding, precision, size, components), then the file's end."""
    marker, precision, height, width, components = frame
    name = f"SOF{marker - 0xC0}"
    if marker in _SOF_LOSSLESS:
        return Header(f"lossless JPEG ({name}): DALI's CPU decoder cannot decode it; re-encode as "
                      "baseline JPEG or PNG", width, height)
    if marker in _SOF_HIERARCHICAL:
        return Header(f"hierarchical JPEG ({name}): DALI cannot decode it; re-encode as baseline JPEG",
                      width, height)
    if marker not in _SOF_OK:
        return Header(f"JPEG with unknown frame type {name}: DALI cannot decode it", width, height)
    if precision != 8:
        return Header(f"{precision}-bit JPEG: DALI decodes 8-bit JPEGs only; re-encode with 8 bits",
                      width, height)
    if components not in (1, 3, 4):
        return Header(f"JPEG with {components} colour components: DALI decodes 1 (gray), 3 (YCbCr/RGB) "
                      "or 4 (CMYK/YCCK)", width, height)
    if width == 0 or height == 0:
        return Header(f"JPEG header gives a {width}x{height} image (height in a DNL marker is not "
                      "supported by DALI)", width, height)
    scan_start = f.tell()
    f.seek(max(scan_start, size - _TAIL_BYTES))
    # Fast path: the end marker in the tail. Data appended after it (over 64 KiB of it) is
    # legal, and DALI decodes such files, so only a scan from the image data to EOF can say "cut".
    if b"\xff\xd9" not in f.read() and not _contains(f, scan_start, b"\xff\xd9"):
        return Header("truncated JPEG: no end-of-image marker (FF D9); the file was cut short",
                      width, height)
    return Header(None, width, height)


def _contains(f: BinaryIO, start: int, needle: bytes, chunk: int = 1 << 20) -> bool:
    """Whether ``needle`` occurs in the file from ``start`` to its end, read in chunks."""
    f.seek(start)
    carry = b""
    while block := f.read(chunk):
        if needle in carry + block:
            return True
        carry = block[-(len(needle) - 1):]
    return False


def _png_header(f: BinaryIO, size: int) -> Header:
    """Read IHDR (size, bit depth, colour type) and look for the IEND chunk at the end."""
    f.seek(8)
    ihdr = f.read(25)  # length(4) "IHDR"(4) body(13) crc(4)
    if len(ihdr) < 25 or ihdr[4:8] != b"IHDR":
        return Header("truncated or corrupt PNG: no IHDR chunk after the signature")
    width, height, depth, colour = struct.unpack(">IIBB", ihdr[8:18])
    if depth not in _PNG_DEPTHS.get(colour, set()):
        return Header(f"corrupt PNG: invalid bit depth {depth} for colour type {colour}", width, height)
    if width == 0 or height == 0:
        return Header(f"corrupt PNG: header gives a {width}x{height} image", width, height)
    f.seek(max(33, size - 1024))
    if b"IEND" not in f.read() and not _png_has_iend(f, size):
        return Header("truncated PNG: no IEND chunk at the end; the file was cut short", width, height)
    return Header(None, width, height)


def _png_has_iend(f: BinaryIO, size: int) -> bool:
    """Walk the chunks after IHDR (length + type, then skip data and CRC) until IEND or EOF.

    Only needed when the last KiB has no IEND: data appended after IEND is legal.
    """
    offset = 33
    for _ in range(1 << 20):  # a bound against garbage; real PNGs have far fewer chunks
        f.seek(offset)
        head = f.read(8)
        if len(head) < 8:
            return False
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            return True
        offset += 12 + length
        if offset > size:
            return False
    return False


def _other_header(f: BinaryIO, size: int, head: bytes) -> Header:
    """Formats other than JPEG and PNG: refuse known-undecodable ones, size the rest with PIL."""
    if head.startswith((b"GIF87a", b"GIF89a")):
        return Header("GIF content: DALI cannot decode GIF; convert it to PNG or JPEG")
    if head[4:8] == b"ftyp":
        return Header(f"{head[8:12].decode('ascii', 'replace')!r} (AVIF/HEIF/MP4-family) content: DALI "
                      "cannot decode it; convert it to JPEG")
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP" and struct.unpack("<I", head[4:8])[0] + 8 > size:
        return Header("truncated WebP: the file is shorter than its RIFF header says")
    if head.startswith(b"BM") and len(head) >= 6 and struct.unpack("<I", head[2:6])[0] > size:
        return Header("truncated BMP: the file is shorter than its header says")
    return _pil_header(f, head)


def _pil_header(f: BinaryIO, head: bytes) -> Header:
    """Dimensions of a BMP, TIFF, WebP, PNM or JPEG 2000 file from PIL's lazy open."""
    f.seek(0)
    try:
        with _pil_lock, warnings.catch_warnings():
            # Our own pixel limit applies; PIL's warning below its hard limit is noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f, formats=_PIL_FORMATS) as image:
                return Header(None, *image.size)
    except Image.DecompressionBombError as err:
        return Header(f"refused before decoding: {err}")
    except UnidentifiedImageError:
        return Header(f"not an image DALI can decode (content starts with {head[:12]!r}); "
                      "remove it or convert it to JPEG")
    except (OSError, SyntaxError, ValueError, struct.error) as err:
        return Header(f"corrupt image header: {err}")
