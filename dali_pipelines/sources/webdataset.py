"""WebDataset tar shards as a data source: the on-disk layout, index files, and checks before DALI.

A shard directory, as ``convert_image_folder`` writes it::

    shard-000000.tar   <key>.jpg + <key>.cls members, in pairs (.cls: the label as ASCII decimal)
    shard-000000.idx   the index fn.readers.webdataset needs (byte-identical to DALI's wds2idx)
    shard-000000.json  record of a finished shard: sample count, bytes, sha256, source files (and the
                       resolution cap, when images were re-encoded)
    classes.json       JSON list of class names; label i is classes[i]
    manifest.json      written last: the shard list; its presence means the conversion finished

Shards made by other tools work too: ``*.tar`` with a ``.idx`` next to each (make one with
DALI's ``wds2idx``) and a ``classes.json``; their labels are checked when opened (see
``check_labels``), since a bad one would otherwise become a wrong label inside DALI.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dali_pipelines._util.atomic import write_atomic
from dali_pipelines.errors import DatasetError

_logger = logging.getLogger(__name__)

INDEX_VERSION = "v1.2"
MANIFEST_NAME = "manifest.json"
CLASSES_NAME = "classes.json"
PROGRESS_NAME = "convert.json"  # present while (and after) a conversion runs; holds its plan
MANIFEST_FORMAT = "dali-pipelines-webdataset/1"
IMAGE_EXT = "jpg"  # member extension for JPEG images; other formats keep theirs (see IMAGE_EXTS)
LABEL_EXT = "cls"
LABEL_TRAILING = 4  # trailing whitespace bytes the graph's label parse strips (b"3\r\n" has 2)
_MAX_LABEL_BYTES = 64  # a .cls member longer than this is not a label
# Every extension the converter may write for an image; the reader accepts any of them.
IMAGE_EXTS = ("jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp")


@dataclass(frozen=True)
class WebDatasetShards:
    """A labelled set of images stored in WebDataset tar shards, each with a DALI index file."""

    root: Path
    shards: tuple[str, ...]  # absolute .tar paths, in reading order
    index_files: tuple[str, ...]  # absolute .idx paths, one per shard
    shard_samples: tuple[int, ...]  # samples in each shard, from its index
    shard_bytes: tuple[int, ...]  # size of each .tar when opened; a change means it was rewritten or cut
    classes: tuple[str, ...]
    # The sha256 the manifest records for each .tar (None: shards made by another tool); checked
    # before training by ``dali_pipelines.verify.shards``, not at open (a read of every byte).
    shard_sha256: tuple[str | None, ...]

    def __post_init__(self) -> None:
        counts = {len(self.shards), len(self.index_files), len(self.shard_samples), len(self.shard_bytes),
                  len(self.shard_sha256)}
        if len(counts) != 1:
            raise ValueError("shards, index_files, shard_samples, shard_bytes and shard_sha256 differ in "
                             "length")

    @property
    def num_samples(self) -> int:
        """Samples over all shards."""
        return sum(self.shard_samples)

    def __len__(self) -> int:
        return self.num_samples

    def check_unchanged(self) -> None:
        """Raise if a shard's size changed since it was opened (cut short or rewritten meanwhile).

        DALI cannot recover from a short read ("Critical error in pipeline" kills the whole
        pipeline and does not name the file), so this runs before every graph is built.
        """
        for shard, expected in zip(self.shards, self.shard_bytes, strict=True):
            try:
                size = os.path.getsize(shard)
            except OSError as err:
                raise DatasetError(
                    f"shard {shard} cannot be read ({err}); restore it or re-run to-shards") from err
            if size != expected:
                raise DatasetError(
                    f"shard {shard} changed size since it was opened ({expected} -> {size} bytes); "
                    "it was cut short or rewritten: restore it or re-run to-shards, then restart"
                )


@dataclass(frozen=True)
class IndexEntry:
    """One sample of an index: its key and, per member extension, (data offset, size)."""

    key: str
    members: dict[str, tuple[int, int]]


def index_line(key: str, members: Sequence[tuple[str, int, int]]) -> str:
    """One index line, ``ext offset size name`` per member, as DALI's wds2idx writes it."""
    return " ".join(f"{ext} {offset} {size} {key}.{ext}" for ext, offset, size in members)


def write_index(path: Path, lines: Sequence[str]) -> None:
    """Write an index file (header ``v1.2 <samples>`` then one line per sample), durably."""
    write_atomic(path, f"{INDEX_VERSION} {len(lines)}\n" + "".join(f"{line}\n" for line in lines))


def read_index(path: str | os.PathLike[str]) -> list[IndexEntry]:
    """Parse a DALI webdataset index (v1.1 ``ext offset size`` or v1.2 with member names)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"index file {path} cannot be read ({err}); recreate it with wds2idx") from err
    return parse_index(str(path), text)


def parse_index(path: str, text: str) -> list[IndexEntry]:
    """The entries of an index file's ``text``; ``path`` names it in errors (a file or an s3:// URL)."""
    lines = text.splitlines()
    header = lines[0].split() if lines else []
    if len(header) != 2 or header[0] not in ("v1.1", "v1.2") or not header[1].isdigit():
        raise DatasetError(f"index file {path} has no 'v1.2 <samples>' header; recreate it with wds2idx")
    fields_per_member = 4 if header[0] == "v1.2" else 3
    entries = [_parse_index_line(path, number, line, fields_per_member)
               for number, line in enumerate(lines[1:], start=2) if line.strip()]
    if len(entries) != int(header[1]):
        raise DatasetError(
            f"index file {path} announces {header[1]} samples but lists {len(entries)}; it is "
            "truncated: recreate it with wds2idx or re-run to-shards"
        )
    return entries


def _parse_index_line(path: str, number: int, line: str, width: int) -> IndexEntry:
    parts = line.split()
    if len(parts) % width:
        raise DatasetError(f"{path}:{number}: malformed index line {line[:80]!r}; recreate it with wds2idx")
    members: dict[str, tuple[int, int]] = {}
    key = ""
    for i in range(0, len(parts), width):
        ext, offset, size = parts[i], parts[i + 1], parts[i + 2]
        if not (offset.isdigit() and size.isdigit()):
            raise DatasetError(f"{path}:{number}: non-numeric offset/size in {line[:80]!r}")
        members[ext.lower()] = (int(offset), int(size))
        if width == 4:
            key = parts[i + 3].rsplit("/", 1)[-1].split(".", 1)[0]
    return IndexEntry(key=key, members=members)


def check_shard(shard: Path, entries: Sequence[IndexEntry]) -> int:
    """Check a shard against its index (every sample has an image and a label, none past the end).

    Returns the shard's size in bytes. A shard cut short (an interrupted copy) fails here with
    its name, instead of DALI failing mid-epoch with a "Critical error" that names no file.
    """
    try:
        size = shard.stat().st_size
    except OSError as err:
        raise DatasetError(f"shard {shard} cannot be read ({err}); restore it or re-run to-shards") from err
    check_entries(str(shard), entries, size)
    return size


def check_entries(shard: str, entries: Sequence[IndexEntry], size: int) -> None:
    """Every sample of ``shard`` (a path or URL of ``size`` bytes) has an image and a label, none
    past the end."""
    for entry in entries:
        if LABEL_EXT not in entry.members or not any(ext in entry.members for ext in IMAGE_EXTS):
            raise DatasetError(
                f"shard {shard}: sample {entry.key!r} lacks a .{LABEL_EXT} label or an image member "
                f"({', '.join(sorted(entry.members))}); every sample needs both"
            )
    end = max((offset + length for e in entries for offset, length in e.members.values()), default=0)
    if end > size:
        raise DatasetError(
            f"shard {shard} is truncated: its index reaches byte {end} but the file has {size} bytes; "
            "copy it again (or re-run to-shards to rewrite it)"
        )


def check_labels(shard: Path, entries: Sequence[IndexEntry], num_classes: int) -> None:
    """Read each sample's .cls member (a few bytes, via the index) and require a label in range.

    A label is ASCII decimal, optionally padded with whitespace (at most ``LABEL_TRAILING``
    bytes of it at the end), below ``num_classes``: exactly what the graph's parse reads
    correctly; anything else would silently become a wrong label inside DALI.
    """
    try:
        with shard.open("rb") as f:
            for entry in entries:
                offset, length = entry.members[LABEL_EXT]
                if length > _MAX_LABEL_BYTES:
                    raise _bad_label(shard, entry.key, f"a {length}-byte .{LABEL_EXT} member", num_classes)
                f.seek(offset)
                check_label(shard, entry.key, f.read(length), num_classes)
    except OSError as err:
        raise DatasetError(f"shard {shard} cannot be read ({err}); restore it or re-run to-shards") from err


def check_label(shard: str | Path, key: str, text: bytes, num_classes: int) -> None:
    """Raise unless ``text`` (sample ``key``'s .cls member) is a label the graph's parse reads right."""
    value = text.strip()
    if (not value.isdigit() or len(value) > 9 or int(value) >= num_classes
            or len(text) - len(text.rstrip()) > LABEL_TRAILING):
        raise _bad_label(shard, key, repr(text), num_classes)


def _bad_label(shard: str | Path, key: str, found: str, num_classes: int) -> DatasetError:
    return DatasetError(
        f"shard {shard}: sample {key!r} has label {found}; a .{LABEL_EXT} member must hold a decimal "
        f"class number 0-{num_classes - 1} ({CLASSES_NAME} lists {num_classes} classes): fix the "
        "shard or classes.json"
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, hex: what a shard's record and the manifest keep."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``, or a DatasetError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path} cannot be read as JSON ({err}); restore it or re-run to-shards") from err


def read_classes(root: Path) -> tuple[str, ...]:
    """Class names from ``root/classes.json`` (a JSON list; label i is element i)."""
    path = root / CLASSES_NAME
    if not path.is_file():
        raise DatasetError(
            f"{path} is missing; write a JSON list of class names in label order (to-shards writes it)"
        )
    return parse_classes(str(path), read_json(path))


def parse_classes(path: str, classes: Any) -> tuple[str, ...]:
    """``classes`` (parsed ``classes.json``, named ``path`` in errors) checked to be a list of names."""
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise DatasetError(f"{path} must be a non-empty JSON list of class names")
    return tuple(classes)


def open_shards(root: str | os.PathLike[str]) -> WebDatasetShards:
    """Open a shard directory, checking every shard against its index before DALI sees it."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"shard directory {root} does not exist; create it with "
                           "'python -m dali_pipelines to-shards SRC OUT'")
    manifest = _read_manifest(root)
    tars = _shard_list(root, manifest)
    classes = read_classes(root)
    indexes, samples, sizes = [], [], []
    for tar in tars:
        index = tar.with_suffix(".idx")
        if not index.is_file():
            raise DatasetError(f"shard {tar} has no index {index.name}; make it with 'wds2idx {tar} {index}'")
        entries = read_index(index)
        if not entries:
            raise DatasetError(f"shard {tar} is empty (its index lists no samples); remove it")
        sizes.append(check_shard(tar, entries))
        # Labels are read (one small read per sample) only in shards without our manifest: the
        # converter writes str(label) for a label < len(classes), and the manifest's sizes
        # (checked below) catch a shard replaced since. On ImageNet a full scan would cost
        # 1.3 M seeks at every open, so shards we wrote are trusted.
        if manifest is None:
            check_labels(tar, entries, len(classes))
        indexes.append(str(index))
        samples.append(len(entries))
    checksums = (tuple(record.get("sha256") for record in manifest["shards"]) if manifest
                 else (None,) * len(tars))
    shards = WebDatasetShards(root=root, shards=tuple(str(t) for t in tars), index_files=tuple(indexes),
                              shard_samples=tuple(samples), shard_bytes=tuple(sizes), classes=classes,
                              shard_sha256=checksums)
    if manifest is not None:
        check_against_manifest(root, manifest, shards)
    _logger.info("opened %s: %d samples in %d shards, %d classes", root, len(shards),
                 len(tars), len(classes))
    return shards


def _read_manifest(root: Path) -> dict[str, Any] | None:
    """``root/manifest.json`` checked for shape (a "shards" list of tar/samples/bytes records), or None."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    return parse_manifest(str(path), read_json(path))


def parse_manifest(path: str, manifest: Any) -> dict[str, Any]:
    """``manifest`` (parsed ``manifest.json``, named ``path`` in errors) checked for its shard records."""
    shards = manifest.get("shards") if isinstance(manifest, dict) else None
    fields = {"tar": str, "samples": int, "bytes": int}
    if not isinstance(shards, list) or not shards or not all(
            isinstance(record, dict) and all(isinstance(record.get(k), t) for k, t in fields.items())
            and _is_sha256(record.get("sha256", "0" * 64)) for record in shards):
        raise DatasetError(f"{path} is malformed: it needs a non-empty \"shards\" list of records with "
                           "\"tar\", \"samples\", \"bytes\" (and \"sha256\": 64 hex digits, if any); "
                           "restore it or re-run to-shards")
    return manifest


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _shard_list(root: Path, manifest: dict[str, Any] | None) -> list[Path]:
    """The shards to read: the manifest's list when there is one, else every ``*.tar`` sorted."""
    if manifest is not None:
        return [root / s["tar"] for s in manifest["shards"]]
    if (root / PROGRESS_NAME).is_file():
        raise DatasetError(
            f"the conversion into {root} did not finish ({MANIFEST_NAME} is missing); run the same "
            "'python -m dali_pipelines to-shards SRC OUT' again to resume it"
        )
    tars = sorted(p for p in root.iterdir() if p.suffix == ".tar" and p.is_file())
    if not tars:
        raise DatasetError(f"{root} has no .tar shards; create them with "
                           f"'python -m dali_pipelines to-shards SRC {root}'")
    return tars


def check_against_manifest(root: str | Path, manifest: dict[str, Any], shards: WebDatasetShards) -> None:
    """A shard cut inside its tail padding still passes the index check; the manifest's sizes catch it.
    ``root`` is the shard folder (a path or an s3:// URL)."""
    for record, size, count in zip(manifest["shards"], shards.shard_bytes, shards.shard_samples, strict=True):
        if record["bytes"] != size or record["samples"] != count:
            raise DatasetError(
                f"shard {root}/{record['tar']} has {size} bytes and {count} samples but "
                f"{root}/{MANIFEST_NAME} recorded {record['bytes']} and {record['samples']}; it is "
                "truncated or replaced: copy it again or re-run to-shards"
            )
