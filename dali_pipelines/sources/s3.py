"""Data in an S3 bucket: an ImageFolder tree or WebDataset shards under ``s3://bucket/prefix``.

boto3 lists the bucket and reads the small files (``classes.json``, ``manifest.json``, the
``.idx`` indexes), with the AWS SDK's own conventions for credentials, region and endpoint
(environment, ``~/.aws/config``, ``AWS_PROFILE``). DALI reads the images and shards itself:
its readers get ``s3://`` paths, and nothing is copied to local disk first.

DALI's S3 client takes its endpoint from ``AWS_ENDPOINT_URL`` only, once per process, and
addresses buckets virtual-host style (``bucket.host``): a custom endpoint must be set there
as an IP literal. ``open_bucket`` checks that before any work starts.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import posixpath
import re
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import IMG_EXTENSIONS, SPLITS, ImageFolderData
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

_logger = logging.getLogger(__name__)

SCHEME = "s3://"
ENDPOINT_ENV = "AWS_ENDPOINT_URL"  # the one place DALI's S3 client looks for an endpoint
REQUEST_THREADS = 16  # small requests (indexes, labels, HEADs) in flight at once: each mostly waits
_AWS_DOMAIN = ".amazonaws.com"
_first_endpoint: dict[str, str | None] = {}  # what this process's DALI S3 client was set up with


def is_s3_url(path: str | os.PathLike[str]) -> bool:
    """True for ``s3://...``."""
    return str(path).startswith(SCHEME)


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing slash; "" for the whole bucket)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket/prefix`` -> S3Location; DatasetError naming the URL when it is not one."""
        if not is_s3_url(url) or not url[len(SCHEME):].split("/", 1)[0]:
            raise DatasetError(f"{url!r} is not an S3 URL; pass s3://<bucket>/<prefix>")
        bucket, _, prefix = url[len(SCHEME):].partition("/")
        return cls(bucket, prefix.strip("/"))

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"

    def key(self, relative: str) -> str:
        """The object key of ``relative`` (a path under this prefix)."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def child(self, relative: str) -> S3Location:
        return S3Location(self.bucket, self.key(relative))

    def object_url(self, relative: str) -> str:
        return f"{SCHEME}{self.bucket}/{self.key(relative)}"


class ObjectInfo(NamedTuple):
    """What a listing says of one object."""

    size: int
    etag: str


class BucketReadError(DatasetError):
    """DALI could not read an object of a bucket mid-run; the message names the endpoint and the object."""


# --- the client, its endpoint and DALI's -------------------------------------------------------


def bucket_client() -> Any:
    """A boto3 S3 client configured the AWS SDK's way; DatasetError when boto3 is missing."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise DatasetError("reading s3:// data needs boto3: pip install 'dali-pipelines[s3]'") from None
    # One connection per request thread; the rest (retries, timeouts) as the user configured it.
    return boto3.client("s3", config=Config(max_pool_connections=REQUEST_THREADS))


def endpoint_of(client: Any) -> str:
    """The endpoint boto3 sends this client's requests to."""
    return str(client.meta.endpoint_url).rstrip("/")


def check_dali_endpoint(client: Any, bucket: str) -> None:
    """Raise DatasetError, saying what to set, unless DALI's S3 client will reach the endpoint boto3
    reaches: DALI reads only ``AWS_ENDPOINT_URL`` (not ``AWS_ENDPOINT_URL_S3`` or a profile's
    ``endpoint_url``), once per process, and puts the bucket into the host name."""
    boto_endpoint, env = endpoint_of(client), os.environ.get(ENDPOINT_ENV, "").rstrip("/") or None
    custom = not (urlsplit(boto_endpoint).hostname or "").endswith(_AWS_DOMAIN)
    if custom and env != boto_endpoint:
        raise DatasetError(
            f"boto3 reaches s3://{bucket} at {boto_endpoint} but DALI takes its S3 endpoint only from "
            f"{ENDPOINT_ENV} ({'unset' if env is None else env}); set {ENDPOINT_ENV}={boto_endpoint}")
    if env is not None:
        host = urlsplit(env).hostname or ""
        if not _is_ip(host) and not host.endswith(_AWS_DOMAIN):
            raise DatasetError(
                f"{ENDPOINT_ENV}={env} names the host {host!r}, but DALI addresses buckets virtual-host "
                f"style ({bucket}.{host}) and needs an IP literal there: set "
                f"{ENDPOINT_ENV}={_ip_form(env)}")
    first = _first_endpoint.setdefault("dali", env)
    if first != env:
        raise DatasetError(
            f"this process opened S3 data with {ENDPOINT_ENV}={first} and DALI keeps the endpoint it "
            f"first read; {ENDPOINT_ENV} is now {env}: read from one endpoint per process")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ip_form(endpoint: str) -> str:
    """``endpoint`` with its host resolved to an IP address (or a placeholder when it does not resolve)."""
    parts = urlsplit(endpoint)
    try:
        address = socket.getaddrinfo(parts.hostname, parts.port or None, socket.AF_INET)[0][4][0]
    except (OSError, UnicodeError):
        address = "<its IP address>"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{address}{port}"


def _problem(err: Exception, what: str, endpoint: str) -> DatasetError:
    """A boto3 failure as one line naming ``what`` was asked of ``endpoint`` and the fix."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(err, NoCredentialsError):
        return DatasetError(f"{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (see the AWS SDK's configuration)")
    if isinstance(err, EndpointConnectionError):
        return DatasetError(f"{what}: the S3 endpoint {endpoint} does not answer; start it, or set "
                            f"{ENDPOINT_ENV} to the right one")
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        fixes = {"NoSuchBucket": "the bucket does not exist there: check the URL and the endpoint",
                 "NoSuchKey": "the object is missing: upload it or fix the URL",
                 "404": "the object is missing: upload it or fix the URL",
                 "AccessDenied": "access denied: check the credentials and the bucket policy",
                 "403": "access denied: check the credentials and the bucket policy",
                 "InvalidAccessKeyId": "the endpoint does not know this access key: check the credentials",
                 "SignatureDoesNotMatch": "the secret key is wrong: check the credentials"}
        return DatasetError(f"{what} at {endpoint}: {fixes.get(code, f'{code}: {err}')}")
    return DatasetError(f"{what} at {endpoint} failed ({type(err).__name__}: {err})")


def list_objects(client: Any, location: S3Location) -> dict[str, ObjectInfo]:
    """Every object under ``location``, by its path relative to the prefix, with size and ETag."""
    from botocore.exceptions import BotoCoreError, ClientError

    found: dict[str, ObjectInfo] = {}
    start = f"{location.prefix}/" if location.prefix else ""
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=start):
            for obj in page.get("Contents", []):
                found[obj["Key"][len(start):]] = ObjectInfo(int(obj["Size"]), str(obj["ETag"]).strip('"'))
    except (BotoCoreError, ClientError) as err:
        raise _problem(err, f"listing {location.url}", endpoint_of(client)) from err
    return found


def read_object(client: Any, url: str, first: int | None = None, last: int | None = None) -> bytes:
    """The bytes of the object at ``url`` (bytes ``first``-``last`` inclusive when given); OSError
    naming the URL when the request fails, as a local read would."""
    from botocore.exceptions import BotoCoreError, ClientError

    location = S3Location.parse(url)
    extra = {"Range": f"bytes={first}-{last}"} if first is not None else {}
    try:
        return client.get_object(Bucket=location.bucket, Key=location.prefix, **extra)["Body"].read()
    except (BotoCoreError, ClientError) as err:
        # An errno marks it a read error (never cached), as a local read's would.
        raise OSError(errno.EIO, str(_problem(err, f"reading {url}", endpoint_of(client)))) from err


def _read_json(client: Any, url: str) -> Any:
    try:
        return json.loads(read_object(client, url))
    except (OSError, ValueError) as err:
        raise DatasetError(f"{url} cannot be read as JSON ({err}); restore it or re-run to-shards") from err


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
                raise _problem(err, f"shard {url}", endpoint_of(client)) from err

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
    folders = {rel.split("/", 1)[0] for rel in listing if "/" in rel}
    if folders and folders <= set(SPLITS):
        return {name: scan_bucket_folder(location.child(name), _under(listing, name))
                for name in SPLITS if name in folders}
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
                               _read_json(client, location.object_url(MANIFEST_NAME)))
                if MANIFEST_NAME in listing else None)
    tars = _shard_names(location, listing, manifest)
    if CLASSES_NAME not in listing:
        raise DatasetError(f"{location.object_url(CLASSES_NAME)} is missing; upload the JSON list of class "
                           "names in label order (to-shards writes it)")
    classes = parse_classes(location.object_url(CLASSES_NAME),
                            _read_json(client, location.object_url(CLASSES_NAME)))
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
                      shard_bytes=tuple(listing[t].size for t in tars), classes=classes)
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
