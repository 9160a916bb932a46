"""Shard folders as other tools write them (one tar, DALI's wds2idx index, classes.json, no manifest),
for the tests of shard sources and shard checks."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path


def foreign_shards(folder: Path, images: list[bytes], labels: list[bytes], classes: int) -> Path:
    """``folder`` holding ``data.tar`` (members ``s<i>.jpg`` + ``s<i>.cls``), its index and classes.json."""
    folder.mkdir()
    with tarfile.open(folder / "data.tar", "w") as tar:
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            for name, data in ((f"s{i}.jpg", image), (f"s{i}.cls", label)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    subprocess.run([sys.executable, "-m", "wds2idx", str(folder / "data.tar"), str(folder / "data.idx")],
                   check=True, capture_output=True)
    (folder / "classes.json").write_text(json.dumps([f"c{i}" for i in range(classes)]))
    return folder
