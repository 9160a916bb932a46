"""What verification decided about a data set, small enough to send to every rank: a digest of
the listing it judged and the files it leaves out. Under torchrun rank 0 verifies; every other
rank applies rank 0's verdict to its own scan, which must be the same listing, and so never
stats or opens a file to verify it."""

from __future__ import annotations

import array
import hashlib
import os
from dataclasses import dataclass

from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import ImageFolderData

_CHUNK = 65536  # paths joined and hashed at a time
_FORMAT = b"dali-pipelines-listing/1\0"


@dataclass(frozen=True)
class Verdict:
    """The listing judged (``listing_digest``) and the files to leave out: (name relative to the
    data root, or absolute outside it; reason), in data order."""

    listing: str
    skipped: tuple[tuple[str, str], ...] = ()

    def apply(self, data: ImageFolderData) -> ImageFolderData:
        """``data`` without the skipped files; a DatasetError when ``data`` is not the listing judged
        (another rank scanned other files, or the data changed in between). Reads no file."""
        if listing_digest(data) != self.listing:
            raise DatasetError(
                f"the files under {data.root} differ from those rank 0 verified (another node sees other "
                "data, or the data changed during start-up); give every rank the same data and start again")
        if not self.skipped:
            return data
        prefix = os.path.join(str(data.root), "")
        skipped = {name if os.path.isabs(name) else prefix + name for name, _ in self.skipped}
        return data.subset([i for i, path in enumerate(data.files) if path not in skipped])


def listing_digest(data: ImageFolderData) -> str:
    """A digest of the classes, the names relative to the root and the labels of ``data``: equal on
    ranks that scanned the same files, wherever each one mounts the root."""
    prefix = os.path.join(str(data.root), "")
    h = hashlib.blake2b(_FORMAT, digest_size=16)
    h.update("\0".join(data.classes).encode("utf-8", "surrogateescape") + b"\0\0")
    for start in range(0, len(data), _CHUNK):
        # Names cannot hold "\0": replacing "\0<root>/" cuts the root off every path but the first.
        joined = "\0" + "\0".join(data.files[start:start + _CHUNK])
        h.update(joined.replace("\0" + prefix, "\0").encode("utf-8", "surrogateescape"))
        h.update(array.array("q", data.labels[start:start + _CHUNK]).tobytes())
    return h.hexdigest()


def verdict_for(data: ImageFolderData, bad: dict[str, str]) -> Verdict:
    """The verdict that leaves out ``bad`` (path -> reason, in data order) from ``data``."""
    prefix = os.path.join(str(data.root), "")
    skipped = tuple((path.removeprefix(prefix), reason) for path, reason in bad.items())
    return Verdict(listing_digest(data), skipped)
