"""Data in an S3 bucket: an ImageFolder tree or WebDataset shards under ``s3://bucket/prefix``.

boto3 lists the bucket and reads the small files (``classes.json``, ``manifest.json``, the
``.idx`` indexes; see ``sources.bucket``); DALI reads the images and shards itself: its readers
get ``s3://`` paths, and nothing is copied to local disk first. ``read_failure`` turns DALI's
error about an object it could not read into one line.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.bucket import (
    ENDPOINT_ENV,
    REQUEST_THREADS,
    SCHEME,
    ObjectInfo,
    S3Location,
    bucket_client,
    check_dali_endpoint,
    endpoint_of,
    is_s3_url,
    list_objects,
    read_json_object,
    read_object,
    request_problem,
)
from dali_pipelines.sources.image_folder import IMG_EXTENSIONS, ImageFolderData
from dali_pipelines.sources.splits import splits_among
from dali_pipelines.sources.webdataset import (
    CLASSES_NAME,
    LABEL_EXT,
    MANIFEST_NAME,
    PROGRESS_NAME,
    IndexEntry,
    WebDatasetShards,
    check_against_manifest,
    check_entries,
    check_label,
    parse_classes,
    parse_index,
    parse_manifest,
)

__all__ = ["BucketReadError", "S3ImageFolder", "S3Shards", "S3Source", "bucket_image_sets", "is_s3_url",
           "open_bucket", "read_failure", "scan_bucket_folder"]

_logger = logging.getLogger(__name__)


class BucketReadError(DatasetError):
    """DALI could not read an object of a bucket mid-run; the message names the endpoint and the object."""


# --- the two kinds of data in a bucket ---------------------------------------------------------


@dataclass(frozen=True)
class S3ImageFolder(ImageFolderData):
    """An ImageFolder tree in a bucket: ``files`` are ``s3://`` URLs, with each object's listed
    size and ETag (what verification caches by)."""

    root: str  # type: ignore[assignment]  # s3://bucket/prefix
    sizes: tuple[int, ...] = ()
    etags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not len(self.files) == len(self.sizes) == len(self.etags):
            raise ValueError(f"{len(self.files)} files, {len(self.sizes)} sizes, {len(self.etags)} ETags")

    def subset(self, keep: Sequence[int]) -> S3ImageFolder:
        """The same tree restricted to the given sample indices (in that order)."""
        pick = [*keep]
        return replace(self, files=tuple(self.files[i] for i in pick),
                       labels=tuple(self.labels[i] for i in pick),
                       sizes=tuple(self.sizes[i] for i in pick), etags=tuple(self.etags[i] for i in pick))


@dataclass(frozen=True)
class S3Shards(WebDatasetShards):
    """WebDataset shards in a bucket: ``shards`` and ``index_files`` are ``s3://`` URLs."""

    root: str  # type: ignore[assignment]  # s3://bucket/prefix

    def check_unchanged(self) -> None:
        """Raise if a shard's size changed since it was opened (one HEAD request per shard)."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = bucket_client()

        def size_of(url: str) -> int:
            location = S3Location.parse(url)
            try:
                return int(client.head_object(Bucket=location.bucket, Key=location.prefix)["ContentLength"])
            except (BotoCoreError, ClientError) as err:
                raise request_problem(err, f"shard {url}", endpoint_of(client)) from err

        with ThreadPoolExecutor(max_workers=REQUEST_THREADS) as pool:
            sizes = list(pool.map(size_of, self.shards))
        for shard, expected, size in zip(self.shards, self.shard_bytes, sizes, strict=True):
            if size != expected:
                raise DatasetError(
                    f"shard {shard} changed size since it was opened ({expected} -> {size} bytes); it was "
                    "replaced or cut short: upload it again or re-run to-shards, then restart")


S3Source = S3ImageFolder | S3Shards


def open_bucket(url: str, fmt: str = "auto", split: str | None = None) -> S3Source:
    """The data source under ``url`` (or ``url/split``): an ImageFolder tree or shards in a bucket.

    One listing of the prefix; ``fmt="auto"`` picks shards when it holds ``.tar`` objects or a
    manifest at its top, as for a local folder.
    """
    client = bucket_client()
    location = S3Location.parse(url)
    check_dali_endpoint(client, location.bucket)
    if split is not None:
        location = location.child(split)
    listing = list_objects(client, location)
    if not listing:
        fix = (f"pass a data root with a {split}/ folder inside (as make-sample and to-shards write them)"
               if split else "upload the data set there, or fix the URL")
        raise DatasetError(f"no objects under {location.url} at {endpoint_of(client)}; {fix}")
    detected = ("wds" if _holds_shards(listing) else "folder") if fmt == "auto" else fmt
    _logger.info("data %s: %s", location.url, "WebDataset shards" if detected == "wds" else "ImageFolder")
    if detected == "wds":
        return _open_shards(client, location, listing)
    if _holds_shards(listing):
        raise DatasetError(f"{location.url} holds .tar shards, not class folders; use format 'wds' "
                           "(or 'auto')")
    return scan_bucket_folder(location, listing)


def bucket_image_sets(url: str) -> dict[str, S3ImageFolder]:
    """The ImageFolder trees ``url`` names, by split ("" for one tree): ``verify``'s view of a bucket."""
    client = bucket_client()
    location = S3Location.parse(url)
    listing = list_objects(client, location)
    if not listing:
        raise DatasetError(f"no objects under {location.url} at {endpoint_of(client)}; fix the URL")
    folders = {rel.split("/", 1)[0] for rel in listing if "/" in rel and not rel.startswith(".")}
    splits = splits_among(folders)
    if splits:
        return {name: scan_bucket_folder(location.child(name), _under(listing, name)) for name in splits}
    return {"": scan_bucket_folder(location, listing)}


def _under(listing: dict[str, ObjectInfo], folder: str) -> dict[str, ObjectInfo]:
    start = f"{folder}/"
    return {rel[len(start):]: info for rel, info in listing.items() if rel.startswith(start)}


def _holds_shards(listing: dict[str, ObjectInfo]) -> bool:
    """The local rule (``is_shard_dir``) on a listing: a manifest, a conversion, or top-level ``.tar``s."""
    return any(rel in (MANIFEST_NAME, PROGRESS_NAME) or ("/" not in rel and rel.endswith(".tar"))
               for rel in listing)


def scan_bucket_folder(location: S3Location, listing: dict[str, ObjectInfo]) -> S3ImageFolder:
    """``listing`` as torchvision's ImageFolder would scan the same tree on disk: class folders
    sorted, and in each the images walked as ``sorted(os.walk(...))`` walks them (folders by
    path, then file names), so labels and order equal the local tree's."""
    by_class: dict[str, list[tuple[str, str, str]]] = {}
    for rel in listing:
        if "/" not in rel:
            continue  # objects at the top are in no class, as files beside class folders
        name, inside = rel.split("/", 1)
        entries = by_class.setdefault(name, [])
        if inside and not rel.endswith("/") and rel.lower().endswith(IMG_EXTENSIONS):
            entries.append((posixpath.dirname(rel), posixpath.basename(rel), rel))
    if not by_class:
        raise DatasetError(f"{location.url} has no class folders; expected "
                           f"{location.url}/<class>/<image>.jpg (for a split data set pass its train/ or "
                           "val/ prefix)")
    classes = tuple(sorted(by_class))
    files, labels, sizes, etags = [], [], [], []
    for label, name in enumerate(classes):
        if not by_class[name]:
            raise DatasetError(f"class folder {location.url}/{name} has no image files "
                               f"({', '.join(IMG_EXTENSIONS)}); add images or remove the folder")
        for _, _, rel in sorted(by_class[name]):
            files.append(location.object_url(rel))
            labels.append(label)
            sizes.append(listing[rel].size)
            etags.append(listing[rel].etag)
    _logger.info("listed %s: %d images in %d classes", location.url, len(files), len(classes))
    return S3ImageFolder(root=location.url, files=tuple(files), labels=tuple(labels), classes=classes,
                         sizes=tuple(sizes), etags=tuple(etags))


def _open_shards(client: Any, location: S3Location, listing: dict[str, ObjectInfo]) -> S3Shards:
    """Shards in a bucket checked as ``open_shards`` checks a local folder: each against its index
    and listed size, and against the manifest's records, before DALI sees them."""
    manifest = (parse_manifest(location.object_url(MANIFEST_NAME),
                               read_json_object(client, location.object_url(MANIFEST_NAME)))
                if MANIFEST_NAME in listing else None)
    tars = _shard_names(location, listing, manifest)
    if CLASSES_NAME not in listing:
        raise DatasetError(f"{location.object_url(CLASSES_NAME)} is missing; upload the JSON list of class "
                           "names in label order (to-shards writes it)")
    classes = parse_classes(location.object_url(CLASSES_NAME),
                            read_json_object(client, location.object_url(CLASSES_NAME)))
    for tar in tars:
        if tar not in listing:
            raise DatasetError(f"shard {location.object_url(tar)} is missing; upload it or re-run to-shards")
        if f"{tar[:-4]}.idx" not in listing:
            raise DatasetError(f"shard {location.object_url(tar)} has no index {tar[:-4]}.idx; make it with "
                               "wds2idx and upload it beside the shard")
    with ThreadPoolExecutor(max_workers=REQUEST_THREADS) as pool:  # one GET per index
        indexes = list(pool.map(lambda t: _read_index(client, location.object_url(f"{t[:-4]}.idx")), tars))
    for tar, entries in zip(tars, indexes, strict=True):
        if not entries:
            raise DatasetError(f"shard {location.object_url(tar)} is empty (its index lists no samples); "
                               "remove it")
        check_entries(location.object_url(tar), entries, listing[tar].size)
    if manifest is None:  # shards of another tool: every label read, as for a local folder
        _check_labels(client, [location.object_url(t) for t in tars], indexes, len(classes))
    shards = S3Shards(root=location.url, shards=tuple(location.object_url(t) for t in tars),
                      index_files=tuple(location.object_url(f"{t[:-4]}.idx") for t in tars),
                      shard_samples=tuple(len(e) for e in indexes),
                      shard_bytes=tuple(listing[t].size for t in tars), classes=classes,
                      shard_sha256=(tuple(record.get("sha256") for record in manifest["shards"]) if manifest
                                    else (None,) * len(tars)))
    if manifest is not None:
        check_against_manifest(location.url, manifest, shards)
    _logger.info("opened %s: %d samples in %d shards, %d classes", location.url, len(shards), len(tars),
                 len(classes))
    return shards


def _shard_names(location: S3Location, listing: dict[str, ObjectInfo],
                 manifest: dict[str, Any] | None) -> list[str]:
    """The shards to read, relative to the prefix: the manifest's list, else every top-level ``.tar``."""
    if manifest is not None:
        return [record["tar"] for record in manifest["shards"]]
    if PROGRESS_NAME in listing:
        raise DatasetError(f"the conversion uploaded to {location.url} did not finish ({MANIFEST_NAME} is "
                           "missing); finish it with to-shards and upload the whole folder again")
    return sorted(rel for rel in listing if "/" not in rel and rel.endswith(".tar"))


def _read_index(client: Any, url: str) -> list[IndexEntry]:
    try:
        text = read_object(client, url).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"index file {url} cannot be read ({err}); recreate it with wds2idx") from err
    return parse_index(url, text)


def _check_labels(client: Any, shards: list[str], indexes: list[list[IndexEntry]], num_classes: int) -> None:
    """Every sample's .cls member read with a ranged GET (a few bytes each, many in flight)."""
    jobs = [(url, entry) for url, entries in zip(shards, indexes, strict=True) for entry in entries]
    _logger.info("reading %d labels of shards without a manifest", len(jobs))

    def check(job: tuple[str, IndexEntry]) -> None:
        url, entry = job
        offset, length = entry.members[LABEL_EXT]
        try:
            text = read_object(client, url, offset, offset + length - 1) if length else b""
        except OSError as err:
            raise DatasetError(f"shard {url} cannot be read ({err}); upload it again") from err
        check_label(url, entry.key, text, num_classes)

    with ThreadPoolExecutor(max_workers=REQUEST_THREADS) as pool:
        list(pool.map(check, jobs))


# --- a failure while DALI reads ------------------------------------------------------------------

_READER_OP = re.compile(r"operator `nvidia\.dali\.fn\.readers\.\w+`")
_NAMED_OBJECT = re.compile(r"bucket=(\S+) object=(\S+?):?$", re.MULTILINE)
_NO_LONGER_VALID = "Current pipeline object is no longer valid."


def read_failure(err: BaseException, source: object) -> BucketReadError | None:
    """DALI's error from a reader of bucket data as one line naming the endpoint and the object
    (DALI's message names the object when a HEAD request failed; a ranged read's failure does not
    say which, and then the line names the prefix); None for anything else."""
    if not isinstance(source, S3ImageFolder | S3Shards):
        return None
    text = str(err)
    if not (_READER_OP.search(text) or "curlCode" in text or "S3 Object not found" in text):
        return None
    named = _NAMED_OBJECT.search(text)
    obj = (f"{SCHEME}{named.group(1)}/{named.group(2)}" if named
           else f"an object under {source.root}/ (DALI's reader does not say which)")
    endpoint = os.environ.get(ENDPOINT_ENV) or "the AWS default endpoint"
    return BucketReadError(f"DALI failed to read {obj} from the S3 endpoint {endpoint}: {_reason(text)}")


def _reason(text: str) -> str:
    """The part of DALI's message after "encountered:", on one line."""
    body = text.split("encountered:", 1)[-1].replace(_NO_LONGER_VALID, "")
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    lines = [line for line in lines if not _NAMED_OBJECT.search(line)] or lines
    return " ".join(lines).lstrip(": ").strip() or "no reason given"
