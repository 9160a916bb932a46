"""Shards checked before training: each tar against the sha256 its conversion recorded or, in shards
made by other tools (no checksum), each image member's header, as the header pass checks loose files;
DALI decodes what a header cannot vouch for (``deep``: every member). Results are cached by path,
size, mtime and ctime like the file checks: a second run over unchanged shards costs one ``stat``
per shard, a first one a read of every byte. ``locate_failure`` maps a decoder failure inside a DALI
pipeline back to the shard and sample at fault."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dali_pipelines.config import default_num_threads
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.s3 import S3Shards
from dali_pipelines.sources.webdataset import (
    IMAGE_EXTS,
    MANIFEST_NAME,
    WebDatasetShards,
    file_sha256,
    read_index,
)
from dali_pipelines.verify.cache import VerifyCache, stat_key
from dali_pipelines.verify.decode import decode_bytes
from dali_pipelines.verify.headers import DEFAULT_MAX_PIXELS, check_bytes, os_reason

_logger = logging.getLogger(__name__)

_DECODE_BATCH = 64  # members handed to DALI's decoder at once
_LISTED = 3  # bad shards named in an error line; the rest are counted
_REMAKE = "copy it again from where it was made, or re-run to-shards"
_FOREIGN_FIX = ("remove the sample and rebuild the index with wds2idx, or convert the source images with "
                "to-shards")


@dataclass
class ShardReport:
    """Result of checking a shard set: bad shards (tar path -> reason), and where the work went."""

    shards: WebDatasetShards
    bad: dict[str, str] = field(default_factory=dict)  # in shard order; a reason names the sample if known
    checked: int = 0  # shards read this time
    cached: int = 0  # shards whose result came from the cache

    @property
    def ok(self) -> bool:
        return not self.bad

    def message(self) -> str:
        """One line: the first bad shards with their reasons (each ending in its fix), the rest counted."""
        parts = [f"shard {tar}: {reason}" for tar, reason in list(self.bad.items())[:_LISTED]]
        more = len(self.bad) - _LISTED
        rest = f"; and {more} more of {len(self.shards.shards)} shards" if more > 0 else ""
        return "; ".join(parts) + rest


def verify_shards(shards: WebDatasetShards, *, deep: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                  workers: int | None = None, cache_dir: str | os.PathLike[str] | None = None) -> ShardReport:
    """Check every shard of ``shards`` (checksum, else member headers); unchanged ones come from the cache."""
    start, report = time.perf_counter(), ShardReport(shards)
    workers = workers or default_num_threads()
    results: dict[str, str | None] = {}
    todo: dict[int, tuple[int, int, int]] = {}
    with VerifyCache(cache_dir, shards.root, deep=deep, max_pixels=max_pixels) as cache:
        for number, tar in enumerate(shards.shards):
            try:
                key = stat_key(os.stat(tar))
            except OSError as err:
                results[tar] = os_reason(err)
                continue
            hit, results[tar] = cache.lookup(tar, key)
            if hit:
                report.cached += 1
            else:
                todo[number] = key
        # Hashing and header checks on threads (hashlib and file reads release the GIL); decoding
        # after, from this thread: DALI's decoder runs its own threads.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            checks = pool.map(lambda n: _cheap_check(shards, n, deep, max_pixels), todo)
            found = dict(zip(todo, checks, strict=True))
        for number, cheap in found.items():
            tar = shards.shards[number]
            try:
                foreign = shards.shard_sha256[number] is None
                results[tar] = _verdict(cheap, Path(tar), workers, foreign=foreign)
            except OSError as err:
                results[tar] = os_reason(err)
            cache.store(tar, todo[number], results[tar])
    report.checked = len(todo)
    report.bad = {tar: reason for tar in shards.shards if (reason := results[tar]) is not None}
    _logger.info("checked %d shards under %s (%d read, %d from cache) in %.2f s: %d bad", len(shards.shards),
                 shards.root, len(todo), report.cached, time.perf_counter() - start, len(report.bad))
    return report


def prepare_shards(shards: WebDatasetShards, *, cache_dir: str | os.PathLike[str] | None = None,
                   deep: bool = False, workers: int | None = None) -> WebDatasetShards:
    """Check ``shards`` before a graph is built (cached in ``cache_dir``); a DatasetError names every
    bad shard, the sample at fault where it is known, and the fix. Shards in a bucket were checked
    against their indexes and listed sizes when opened; hashing them would download every one."""
    if isinstance(shards, S3Shards):
        return shards
    report = verify_shards(shards, deep=deep, workers=workers, cache_dir=cache_dir)
    if not report.ok:
        raise DatasetError(report.message())
    return shards


def locate_failure(shards: WebDatasetShards, error: BaseException) -> DatasetError | None:
    """The shard and sample behind a decoder failure ``error`` of a DALI pipeline reading ``shards``
    (DALI's message names neither), found by checking every shard again, uncached; None when
    ``error`` is not a decoder's."""
    text = str(error)
    if isinstance(shards, S3Shards) or "fn.decoders." not in text or "out of memory" in text.lower():
        return None
    _logger.warning("DALI's decoder failed on a sample of %s; checking its %d shards to name it",
                    shards.root, len(shards.shards))
    report = verify_shards(shards)
    if not report.ok:
        return DatasetError(f"DALI's pipeline stopped on a sample it cannot decode: {report.message()}")
    said = next((line.strip() for line in reversed(text.splitlines()) if line.strip()
                 and "pipeline object is no longer valid" not in line), "")
    return DatasetError(
        f"DALI's decoder failed on a sample of the shards in {shards.root} ({said}), and every shard matches "
        f"its checksum or passes the header check; find the sample with 'python -m dali_pipelines verify "
        f"{shards.root} --deep', then remove it or re-run to-shards")


# ---------------------------------------------------------------- one shard


@dataclass(frozen=True)
class _Member:
    """An image member of a tar: its sample key, name and byte range."""

    key: str
    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class _Found:
    """What the cheap pass (checksum, or member headers) found in one shard."""

    error: str | None = None  # the shard or its index cannot be read: the whole reason
    mismatch: bool = False  # its sha256 differs from the recorded one
    sample: str | None = None  # the first member whose header fails: "sample 'k' (k.jpg): why"
    to_decode: tuple[_Member, ...] = ()  # members DALI's decoder must judge


def _cheap_check(shards: WebDatasetShards, number: int, deep: bool, max_pixels: int) -> _Found:
    """Shard ``number`` against its recorded sha256, or member by member when it has none (or differs)."""
    tar, expected = Path(shards.shards[number]), shards.shard_sha256[number]
    try:
        members = _image_members(Path(shards.index_files[number]))
        if expected is not None and file_sha256(tar) == expected:
            return _Found(to_decode=tuple(members) if deep else ())  # the converter verified its members
        sample, to_decode = _header_check(tar, members, max_pixels)
        if deep and expected is None:
            to_decode = members
        return _Found(mismatch=expected is not None, sample=sample,
                      to_decode=() if sample else tuple(to_decode))
    except OSError as err:
        return _Found(error=os_reason(err))
    except DatasetError as err:  # an unreadable index: its message names the file and the fix
        return _Found(error=str(err))


def _verdict(found: _Found, tar: Path, workers: int, *, foreign: bool) -> str | None:
    """Why the shard is bad, ending in the fix; None when it is good. Decodes ``found.to_decode``."""
    if found.error is not None:
        return found.error
    sample = found.sample or _decode_check(tar, found.to_decode, workers)
    if found.mismatch:
        where = f" ({sample})" if sample else " (every sample's header passes: the damage is in pixel data)"
        return (f"its sha256 differs from the one {MANIFEST_NAME} records{where}; the shard changed since "
                f"to-shards wrote it: {_REMAKE}")
    if sample is None:
        return None
    return f"{sample}; {_FOREIGN_FIX if foreign else 'remove its source image and re-run to-shards'}"


def _image_members(index: Path) -> list[_Member]:
    members = []
    for entry in read_index(index):
        ext = next(e for e in IMAGE_EXTS if e in entry.members)  # open_shards checked every sample has one
        offset, size = entry.members[ext]
        members.append(_Member(entry.key, f"{entry.key}.{ext}", offset, size))
    return members


def _header_check(tar: Path, members: list[_Member], max_pixels: int) -> tuple[str | None, list[_Member]]:
    """(the first member whose header fails, as "sample 'k' (k.jpg): why", or None; those whose
    header cannot vouch for them)."""
    to_decode = []
    for member, data in _read(tar, members):
        header = check_bytes(data, max_pixels)
        if header.reason is not None:
            return f"sample {member.key!r} ({member.name}): {header.reason}", []
        if header.needs_decode:
            to_decode.append(member)
    return None, to_decode


def _decode_check(tar: Path, members: tuple[_Member, ...], workers: int) -> str | None:
    """The first member DALI's CPU decoder refuses, as "sample 'k' (k.jpg): why", or None."""
    for start in range(0, len(members), _DECODE_BATCH):
        batch = dict(_read(tar, list(members[start:start + _DECODE_BATCH])))
        bad = decode_bytes({m.name: data for m, data in batch.items()}, workers=workers)
        if bad:
            member = next(m for m in batch if m.name in bad)
            return f"sample {member.key!r} ({member.name}): {bad[member.name]}"
    return None


def _read(tar: Path, members: list[_Member]) -> Iterator[tuple[_Member, bytes]]:
    with tar.open("rb") as f:
        for member in members:
            f.seek(member.offset)
            yield member, f.read(member.size)

