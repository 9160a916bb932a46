"""Scanning ImageFolder trees into (path, label) lists in torchvision's order, and file lists."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dali_pipelines._util.atomic import atomic_write
from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.splits import split_folders

_logger = logging.getLogger(__name__)

# Same extensions as torchvision.datasets.folder.IMG_EXTENSIONS, all decodable by DALI, so a
# scan lists exactly the files ImageFolder would.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageFolderData:
    """A labelled list of image files: what every reader and backend consumes."""

    root: Path
    files: tuple[str, ...]  # absolute paths
    labels: tuple[int, ...]
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.files) != len(self.labels):
            raise ValueError(f"{len(self.files)} files but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.files)

    @property
    def samples(self) -> list[tuple[str, int]]:
        """(path, label) pairs, as torchvision's ImageFolder.samples."""
        return list(zip(self.files, self.labels, strict=True))

    def subset(self, keep: Sequence[int]) -> ImageFolderData:
        """The same data set restricted to the given sample indices (in that order)."""
        return ImageFolderData(
            root=self.root,
            files=tuple(self.files[i] for i in keep),
            labels=tuple(self.labels[i] for i in keep),
            classes=self.classes,
        )


def find_classes(root: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class folder names sorted as torchvision's ``find_classes`` sorts them."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"data root {root} does not exist; pass a folder with one sub-folder per class")
    if not root.is_dir():
        raise DatasetError(f"data root {root} is not a folder; pass a folder with one sub-folder per class")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise DatasetError(
            f"data root {root} has no class folders; expected {root}/<class>/<image>.jpg "
            "(for a split data set pass its train/ or val/ folder)"
        )
    return tuple(classes)


def scan_image_folder(root: str | os.PathLike[str]) -> ImageFolderData:
    """List every image under ``root/<class>/`` with labels in ImageFolder's class order."""
    root = Path(root).expanduser().resolve()
    classes = find_classes(root)
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_files = _images_under(root / name)
        if not class_files:
            raise DatasetError(
                f"class folder {root / name} has no image files ({', '.join(IMG_EXTENSIONS)}); "
                "add images or remove the folder"
            )
        files.extend(class_files)
        labels.extend([label] * len(class_files))
    _logger.info("scanned %s: %d images in %d classes", root, len(files), len(classes))
    return ImageFolderData(root=root, files=tuple(files), labels=tuple(labels), classes=classes)


def _images_under(class_dir: Path) -> list[str]:
    """Image paths under one class folder, walked and sorted as torchvision walks them."""
    found = []
    for dirpath, _, filenames in sorted(os.walk(class_dir, followlinks=True)):
        for name in sorted(filenames):
            if name.lower().endswith(IMG_EXTENSIONS):
                found.append(os.path.join(dirpath, name))
    return found


def write_file_list(data: ImageFolderData, path: str | os.PathLike[str],
                    file_root: str | None = None) -> Path:
    """Write a DALI ``file_list`` ("<path> <label>" per line); returns its path.

    Paths are relative to the list's own folder, as DALI reads them when no ``file_root`` is
    given: ``fn.readers.file(file_list=path)``. The list survives moving it with the data.
    With ``file_root`` (a bucket's ``s3://`` prefix: DALI would put the list's folder before a
    URL) they are relative to it, for ``fn.readers.file(file_list=path, file_root=file_root)``.
    """
    path = Path(path)
    folder = path.parent.resolve()  # the data paths are resolved too, so ".." steps are physical
    prefix = None if file_root is None else file_root.rstrip("/") + "/"
    with atomic_write(path, encoding="utf-8") as handle:
        handle.writelines(f"{f.removeprefix(prefix) if prefix else os.path.relpath(f, folder)} {label}\n"
                          for f, label in data.samples)
    return path


def read_file_list(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None,
                   classes: Sequence[str] | None = None) -> ImageFolderData:
    """Read a DALI file list; paths resolve against ``root`` (DALI's ``file_root``), by default
    the list's own folder, as DALI resolves them."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"file list {path} does not exist")
    base = Path(root) if root is not None else path.parent
    files, labels = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        name, _, label = line.rstrip().rpartition(" ")
        if not name or not label.isdigit():
            raise DatasetError(f"{path}:{number}: expected '<path> <integer label>', got {line!r}")
        files.append(str((base / name).resolve()))
        labels.append(int(label))
    if not files:
        raise DatasetError(f"file list {path} is empty")
    names = tuple(classes) if classes is not None else tuple(str(i) for i in range(max(labels) + 1))
    return ImageFolderData(root=base.resolve(), files=tuple(files), labels=tuple(labels),
                           classes=names)


def image_sets(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
               ) -> dict[str, ImageFolderData]:
    """The labelled image sets ``path`` names, by split ("" for one set), all listed before returning.

    An ImageFolder root; a split root (``train/``, ``val/``...: each split); a DALI file list
    (``root`` as in ``read_file_list``); or a single image (an image extension, or binary content).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist; pass an ImageFolder root, a file list or an image")
    if path.is_file() and path.suffix.lower() not in IMG_EXTENSIONS:
        try:
            return {"": read_file_list(path, root=root)}
        except UnicodeDecodeError:
            pass  # binary content: an image under another name
    if root is not None:
        raise DatasetError(f"a root (--root) applies to file lists only; {path} is not one, drop it")
    if path.is_file():
        path = path.absolute()
        return {"": ImageFolderData(root=path.parent, files=(str(path),), labels=(0,), classes=("",))}
    splits = split_folders(path)
    if not splits:
        return {"": scan_image_folder(path)}
    return {name: scan_image_folder(folder) for name, folder in splits.items()}
