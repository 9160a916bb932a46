"""Converting an ImageFolder tree into WebDataset tar shards, resumably and deterministically.

Order: the verified ImageFolder list is shuffled once with a fixed seed, then cut into
shards of ``images_per_shard``. DALI's webdataset reader reads each tar sequentially and only
shuffles within a buffer (and the tar order per epoch), so a class-sorted tar would give
one-class batches; the global shuffle at conversion time is what mixes classes.

Capped resolution (``max_side``): images whose longer side exceeds it are re-encoded smaller
(``capped``); the cap and the JPEG quality are part of the plan and of every record.

Resuming: ``convert.json`` pins the plan (source list, seed, shard size, cap). Each finished shard
gets a ``shard-NNNNNN.json`` record (bytes, sha256), written after the .tar and .idx are
renamed into place; on a rerun, shards whose record matches (size and checksum re-checked)
are kept and any other shard is rewritten from scratch.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import tarfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from dali_pipelines._util.atomic import atomic_write, write_json_atomic
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.capped import CAPPED_EXT, DEFAULT_QUALITY, ResolutionCap, capped_image
from dali_pipelines.sources.image_folder import ImageFolderData, NoClassFoldersError, scan_image_folder
from dali_pipelines.sources.opening import labelled_sets
from dali_pipelines.sources.splits import split_folders
from dali_pipelines.sources.webdataset import (
    CLASSES_NAME,
    LABEL_EXT,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    PROGRESS_NAME,
    WebDatasetShards,
    file_sha256,
    index_line,
    open_shards,
    read_index,
    read_json,
    write_index,
)
from dali_pipelines.verify import prepare_data

_logger = logging.getLogger(__name__)

DEFAULT_IMAGES_PER_SHARD = 1000  # ~110 MB per tar for ImageNet-sized JPEGs (WebDataset suggests 100 MB-1 GB)
_VERIFY_CACHE = ".verify-cache"
_KEY_DIGITS = 9  # zero-padded sample number; keys carry no dots (the reader splits names at the first dot)
_ENCODE_BATCH = 64  # images re-encoded at once (Pillow releases the GIL): bounds the memory held


@dataclass(frozen=True)
class _Shard:
    """One planned shard: its file stem and the (absolute path, label) samples it holds."""

    number: int
    first_key: int
    samples: tuple[tuple[str, int], ...]

    @property
    def stem(self) -> str:
        return f"shard-{self.number:06d}"


def convert_image_folder(src_root: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                         images_per_shard: int = DEFAULT_IMAGES_PER_SHARD, seed: int | None = 0,
                         deep_verify: bool = False, progress: bool = True, max_side: int | None = None,
                         quality: int | None = None) -> WebDatasetShards:
    """Write ``src_root`` (an ImageFolder) as tar shards + DALI indexes in ``out_dir``; resumable.

    Files failing the verify checks are left out (and logged). ``seed=None`` keeps ImageFolder
    order (class-sorted: only sensible for evaluation data). ``max_side``: images whose longer
    side exceeds it are re-encoded to that size as JPEG at ``quality`` (default 90). Rerunning
    with the same arguments after an interruption keeps the finished shards and writes the rest.
    """
    _check_out(Path(out_dir).expanduser().resolve(), images_per_shard, seed,  # before the scan
               resolution_cap(max_side, quality))
    return convert_source(scan_image_folder(Path(src_root).expanduser()), out_dir,
                          images_per_shard=images_per_shard, seed=seed, deep_verify=deep_verify,
                          progress=progress, max_side=max_side, quality=quality)


def convert_source(source: ImageFolderData, out_dir: str | os.PathLike[str], *,
                   images_per_shard: int = DEFAULT_IMAGES_PER_SHARD, seed: int | None = 0,
                   deep_verify: bool = False, progress: bool = True, max_side: int | None = None,
                   quality: int | None = None) -> WebDatasetShards:
    """Write the files of ``source`` (a scanned folder, a label list, one part of a split) as
    shards in ``out_dir``, labelled by its class list; as ``convert_image_folder`` otherwise."""
    if images_per_shard < 1:
        raise ValueError(f"images_per_shard must be >= 1, got {images_per_shard}")
    cap = resolution_cap(max_side, quality)
    out = Path(out_dir).expanduser().resolve()
    _check_out(out, images_per_shard, seed, cap)  # before verifying: that writes out/.verify-cache
    data = _verified(source, out, deep=deep_verify)
    shards = _plan(data, images_per_shard, seed)
    plan = _plan_record(data, shards, images_per_shard, seed, cap)
    _claim(out, plan)
    write_json_atomic(out / CLASSES_NAME, list(data.classes))
    records = []
    with tqdm(total=len(data), unit="img", desc=f"to-shards {out.name}", disable=not progress) as bar:
        for shard in shards:
            record = _finished_record(out, shard, plan["plan_id"])
            if record is None:
                record = _write_shard(out, shard, data.root, plan["plan_id"], cap)
            else:
                _logger.debug("kept %s (verified)", shard.stem)
            records.append({k: record[k] for k in ("tar", "index", "samples", "bytes", "sha256")})
            bar.update(len(shard.samples))
    manifest = plan | {"shards": records}
    write_json_atomic(out / MANIFEST_NAME, manifest)
    _logger.info("wrote %d images in %d shards to %s", len(data), len(shards), out)
    return open_shards(out)


def resolution_cap(max_side: int | None, quality: int | None) -> ResolutionCap | None:
    """The cap ``max_side`` and ``quality`` ask for (None: images are stored as they are)."""
    if max_side is None:
        if quality is not None:
            raise ValueError("quality sets how images over max_side are re-encoded; give max_side too")
        return None
    return ResolutionCap(max_side, DEFAULT_QUALITY if quality is None else quality)


def convert_dataset(src_root: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                    images_per_shard: int = DEFAULT_IMAGES_PER_SHARD, seed: int | None = 0,
                    deep_verify: bool = False, progress: bool = True, val_split: float | None = None,
                    list_root: str | os.PathLike[str] | None = None, max_side: int | None = None,
                    quality: int | None = None) -> dict[str, WebDatasetShards]:
    """Convert an ImageFolder or a label list, or a split root (``train/``, ``val/``...) into
    ``out_dir/<split>``, every split labelled by train/'s class list.

    ``val_split`` holds out that fraction of each class (``split_source``, from ``seed``, 0 when
    ``seed`` is None) and writes ``train/`` and ``val/``. Returns the shards by split name ("" for
    one data set). Every output folder is checked before any split is converted. Other options
    as in ``convert_image_folder``.
    """
    src, out = Path(src_root).expanduser(), Path(out_dir).expanduser()
    cap = resolution_cap(max_side, quality)
    names = _split_names(src, val_split)
    if names:  # every output folder checked before the scan
        _check_split_out(out, names)
        for name in names:
            _check_out(out / name, images_per_shard, seed, cap)
    else:
        _check_out(out.resolve(), images_per_shard, seed, cap)
    try:
        sets = labelled_sets(src, list_root=list_root, val_split=val_split, seed=seed or 0)
    except NoClassFoldersError as err:
        raise err.with_hint("to-shards needs labelled images: a folder of class folders, a split root "
                            "or a label list (.csv, .tsv, or a DALI file list)") from None
    options: dict[str, Any] = {"images_per_shard": images_per_shard, "seed": seed,
                               "deep_verify": deep_verify, "progress": progress, "max_side": max_side,
                               "quality": quality}
    if list(sets) == [""]:
        return {"": convert_source(sets[""], out, **options)}
    _logger.info("%s: converting each split (%s)", src, ", ".join(sets))
    return {name: convert_source(data, out / name, **options) for name, data in sets.items()}


def _split_names(src: Path, val_split: float | None) -> list[str]:
    """The split folders a conversion of ``src`` writes (none for one data set)."""
    found = list(split_folders(src)) if src.is_dir() else []
    if val_split is None:
        return found
    return ["train", "val", *[name for name in found if name not in ("train", "val")]]


def _check_split_out(out: Path, splits: Sequence[str]) -> None:
    """Refuse a split output folder holding anything but the split folders this conversion writes."""
    _check_is_folder(out)
    others = sorted(p.name for p in out.iterdir() if p.name not in splits) if out.is_dir() else []
    if others:
        raise DatasetError(
            f"output folder {out} holds {', '.join(others[:5])}{' ...' if len(others) > 5 else ''}, "
            f"not only the split folders this conversion writes ({', '.join(splits)}); pick a new or "
            "empty folder")


def _verified(data: ImageFolderData, out: Path, *, deep: bool) -> ImageFolderData:
    """The files that pass the verify command's checks; bad ones are left out, listed and logged.

    Results (and the list of files left out) go to ``out/.verify-cache``, so a resumed
    conversion costs one stat per file.
    """
    return prepare_data(data, on_bad_file="skip", deep=deep, cache_dir=out / _VERIFY_CACHE)


def _plan(data: ImageFolderData, images_per_shard: int, seed: int | None) -> list[_Shard]:
    """Samples in their stored order (one seeded global shuffle), cut into shards."""
    order = list(range(len(data)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    samples = [(data.files[i], data.labels[i]) for i in order]
    return [_Shard(number=n, first_key=start, samples=tuple(samples[start:start + images_per_shard]))
            for n, start in enumerate(range(0, len(samples), images_per_shard))]


def _plan_record(data: ImageFolderData, shards: Sequence[_Shard], images_per_shard: int,
                 seed: int | None, cap: ResolutionCap | None) -> dict[str, Any]:
    """What pins a conversion: resuming is only allowed into a folder with the same plan_id."""
    digest = hashlib.sha256()
    for shard in shards:
        for path, label in shard.samples:
            digest.update(f"{os.path.relpath(path, data.root)}\t{label}\n".encode())
    plan = {"format": MANIFEST_FORMAT, "images_per_shard": images_per_shard, "seed": seed,
            "num_samples": len(data), "num_shards": len(shards), "classes": list(data.classes),
            "sources_sha256": digest.hexdigest(), **(cap.record() if cap else {})}
    # The source's absolute path is recorded but not pinned: a moved source may still resume.
    plan_id = hashlib.sha256(repr(sorted(plan.items())).encode()).hexdigest()[:16]
    return plan | {"plan_id": plan_id, "source": str(data.root)}


def _check_is_folder(out: Path) -> None:
    """Refuse an output path that exists but is not a folder."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"output {out} exists and is not a folder; pick a new or empty folder")


def _check_out(out: Path, images_per_shard: int, seed: int | None, cap: ResolutionCap | None) -> None:
    """Refuse ``out`` early unless it is new, empty, or a conversion with these settings.

    The source files are compared later (``_claim``), once verification has listed them.
    """
    _check_is_folder(out)
    progress = out / PROGRESS_NAME
    if progress.is_file():
        previous = read_json(progress)
        wanted = {"images_per_shard": images_per_shard, "seed": seed,
                  **(cap.record() if cap else {"max_side": None, "quality": None})}
        if not isinstance(previous, dict) or {k: previous.get(k) for k in wanted} != wanted:
            raise _other_settings(out, progress, previous)
    elif out.is_dir() and any(p.name != _VERIFY_CACHE for p in out.iterdir()):
        raise DatasetError(
            f"output folder {out} is not empty and holds no conversion; pick a new or empty folder")


def _other_settings(out: Path, progress: Path, previous: Any) -> DatasetError:
    """The error for a folder holding a conversion with another plan."""
    previous = previous if isinstance(previous, dict) else {}
    cap = (f"max side {previous['max_side']} px at quality {previous.get('quality')}"
           if previous.get("max_side") else "no max side")
    return DatasetError(
        f"{out} holds a conversion with other settings or source files ({progress}: seed "
        f"{previous.get('seed')}, {previous.get('images_per_shard')} images per shard, {cap}, "
        f"{previous.get('num_samples')} images); rerun with those, or pick a new OUT folder")


def _claim(out: Path, plan: dict[str, Any]) -> None:
    """Start a conversion in ``out``, or resume one with the same plan; refuse anything else."""
    progress = out / PROGRESS_NAME
    if progress.is_file():
        previous = read_json(progress)
        if not isinstance(previous, dict) or previous.get("plan_id") != plan["plan_id"]:
            raise _other_settings(out, progress, previous)
        _logger.info("resuming the conversion in %s", out)
        return
    if out.exists() and any(p.name != _VERIFY_CACHE for p in out.iterdir()):
        raise DatasetError(
            f"output folder {out} is not empty and holds no conversion; pick a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(progress, plan)


def _finished_record(out: Path, shard: _Shard, plan_id: str) -> dict[str, Any] | None:
    """The shard's record when the shard on disk is complete and intact, else None (rewrite it)."""
    record_path = out / f"{shard.stem}.json"
    if not record_path.is_file():
        return None
    try:
        record = read_json(record_path)
        tar, index = out / record["tar"], out / record["index"]
        intact = (record["plan"] == plan_id and record["samples"] == len(shard.samples)
                  and tar.is_file() and tar.stat().st_size == record["bytes"]
                  and len(read_index(index)) == len(shard.samples) and file_sha256(tar) == record["sha256"])
    except (DatasetError, KeyError, TypeError) as err:
        _logger.warning("rewriting %s: its record %s is unusable (%s)", shard.stem, record_path, err)
        return None
    if not intact:
        _logger.warning("rewriting %s: it does not match its record %s", shard.stem, record_path)
    return record if intact else None


def _write_shard(out: Path, shard: _Shard, src_root: Path, plan_id: str,
                 cap: ResolutionCap | None) -> dict[str, Any]:
    """Write one tar, then its index, each replaced whole, then the record that vouches for both."""
    record_path = out / f"{shard.stem}.json"
    record_path.unlink(missing_ok=True)  # a stale record must never vouch for a half-written tar
    tar, index = out / f"{shard.stem}.tar", out / f"{shard.stem}.idx"
    # A fixed temporary name: a rerun overwrites what an interrupted conversion left.
    with atomic_write(tar, "wb", temp=tar.with_name(tar.name + ".partial")) as handle:
        lines, reencoded = _write_tar(handle, shard, cap)
    write_index(index, lines)
    record = {"tar": tar.name, "index": index.name, "samples": len(shard.samples),
              "bytes": tar.stat().st_size, "sha256": file_sha256(tar), "plan": plan_id,
              **({**cap.record(), "reencoded": reencoded} if cap else {}),
              "sources": [os.path.relpath(path, src_root) for path, _ in shard.samples]}
    write_json_atomic(record_path, record)
    return record


def _write_tar(handle: IO[bytes], shard: _Shard, cap: ResolutionCap | None) -> tuple[list[str], int]:
    """Write the shard's members (``<key>.<ext>`` image, ``<key>.cls`` label); return its index
    lines and how many images were re-encoded under ``cap``."""
    lines, reencoded = [], 0
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        samples = zip(enumerate(shard.samples, start=shard.first_key), _images(shard, cap), strict=True)
        for (number, (_, label)), (image_ext, image, recoded) in samples:
            key = f"{number:0{_KEY_DIGITS}d}"
            reencoded += recoded
            members = [(image_ext, image), (LABEL_EXT, str(label).encode("ascii"))]
            lines.append(index_line(key, [(ext, _add_member(tar, f"{key}.{ext}", data), len(data))
                                          for ext, data in members]))
    return lines, reencoded  # the tar is closed (end-of-archive blocks written) before the caller syncs


def _images(shard: _Shard, cap: ResolutionCap | None) -> Iterator[tuple[str, bytes, bool]]:
    """Each sample's (member extension, image bytes, re-encoded?), in order: the file as it is, or
    re-encoded under ``cap`` on a thread per core, a batch at a time."""
    paths = [path for path, _ in shard.samples]
    if cap is None:
        yield from ((member_ext(path), Path(path).read_bytes(), False) for path in paths)
        return
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, len(paths), _ENCODE_BATCH):
            batch = paths[start:start + _ENCODE_BATCH]
            for path, capped in zip(batch, pool.map(lambda p: capped_image(p, cap), batch), strict=True):
                yield ((CAPPED_EXT, capped, True) if capped is not None
                       else (member_ext(path), Path(path).read_bytes(), False))


def member_ext(path: str) -> str:
    """Member extension for an image file: its own, lower case, with ``jpeg`` spelled ``jpg``."""
    ext = Path(path).suffix.lower().lstrip(".")
    return "jpg" if ext == "jpeg" else ext


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Append one regular file with fixed metadata (reproducible bytes); return its data offset."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    tar.addfile(info, io.BytesIO(data))
    # tar.offset points past the data and its padding to a 512-byte block.
    return tar.offset - -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE

