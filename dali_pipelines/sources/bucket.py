"""The AWS SDK's side of a bucket: ``s3://`` URLs, the boto3 client (credentials, region and
endpoint by the SDK's own conventions), the endpoint DALI's S3 client needs, listings and reads.

DALI's S3 client takes its endpoint from ``AWS_ENDPOINT_URL`` only, once per process, and
addresses buckets virtual-host style (``bucket.host``): a custom endpoint must be set there as an
IP literal. ``check_dali_endpoint`` says what to set before any work starts.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from dali_pipelines.errors import DatasetError

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


def request_problem(err: Exception, what: str, endpoint: str) -> DatasetError:
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
        raise request_problem(err, f"listing {location.url}", endpoint_of(client)) from err
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
        raise OSError(errno.EIO, str(request_problem(err, f"reading {url}", endpoint_of(client)))) from err


def read_json_object(client: Any, url: str) -> Any:
    """The parsed JSON object at ``url``, or a DatasetError naming it."""
    try:
        return json.loads(read_object(client, url))
    except (OSError, ValueError) as err:
        raise DatasetError(f"{url} cannot be read as JSON ({err}); restore it or re-run to-shards") from err
