"""Scanning ImageFolder trees into (path, label) lists in torchvision's order, and file lists."""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dali_pipelines._util.atomic import atomic_write
from dali_pipelines._util.file_list_names import unlistable_names
from dali_pipelines.errors import DatasetError

_logger = logging.getLogger(__name__)

# Same extensions as torchvision.datasets.folder.IMG_EXTENSIONS, all decodable by DALI, so a
# scan lists exactly the files ImageFolder would.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Label lists name classes by index: one far above any real class count is a typo, and would make
# a class list of that length.
MAX_CLASSES = 1_000_000


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


class NoClassFoldersError(DatasetError):
    """A folder given as an ImageFolder root holds no class folders; ``with_hint`` adds the fix
    in the caller's words (which flag, which other kinds of data it takes)."""

    def __init__(self, root: Path, hint: str = "") -> None:
        self.root = root
        loose = _count_loose_images(root)
        found = f" (its {loose} image file{'s lie' if loose > 1 else ' lies'} directly in it, unlabelled)" \
            if loose else ""
        super().__init__(f"{root} has no class folders; expected {root}/<class>/<image>.jpg{found}"
                         f"{'; ' + hint if hint else ''}")

    def with_hint(self, hint: str) -> NoClassFoldersError:
        """The same error with the caller's fix appended."""
        return NoClassFoldersError(self.root, hint)


def _count_loose_images(root: Path) -> int:
    with os.scandir(root) as entries:
        return sum(1 for entry in entries if entry.name.lower().endswith(IMG_EXTENSIONS))


def find_classes(root: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class folder names sorted as torchvision's ``find_classes`` sorts them."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"data root {root} does not exist; pass a folder with one sub-folder per class")
    if not root.is_dir():
        raise DatasetError(f"data root {root} is not a folder; pass a folder with one sub-folder per class")
    with os.scandir(root) as entries:
        classes = sorted(entry.name for entry in entries if entry.is_dir())
    if not classes:
        raise NoClassFoldersError(root)
    return tuple(classes)


def scan_image_folder(root: str | os.PathLike[str]) -> ImageFolderData:
    """List every image under ``root/<class>/`` with labels in ImageFolder's class order.

    Folders are walked through symbolic links, each folder once (a link back up the tree is
    not followed again), and only regular files are listed: a FIFO, socket or device with an
    image name would block the first reader forever, so it is left out with a warning.
    """
    root = Path(root).expanduser().resolve()
    classes = find_classes(root)
    files: list[str] = []
    labels: list[int] = []
    skipped = _Skipped()
    for label, name in enumerate(classes):
        class_files = _images_under(root / name, skipped)
        if not class_files:
            raise DatasetError(
                f"class folder {root / name} has no image files ({', '.join(IMG_EXTENSIONS)}); "
                "add images or remove the folder"
            )
        files.extend(class_files)
        labels.extend([label] * len(class_files))
    skipped.warn(root)
    _logger.info("scanned %s: %d images in %d classes", root, len(files), len(classes))
    return ImageFolderData(root=root, files=tuple(files), labels=tuple(labels), classes=classes)


@dataclass
class _Skipped:
    """What a scan left out: image-named entries that are no regular file, and repeated folders."""

    special: list[str] = field(default_factory=list)
    repeated: list[tuple[str, str]] = field(default_factory=list)  # (link, the folder it leads to)

    def warn(self, root: Path) -> None:
        """One warning per kind, naming the first few."""
        if self.special:
            _logger.warning("%s: left out %d image-named entr%s that %s no regular file (a FIFO, socket or "
                            "device would block a reader forever): %s", root, len(self.special),
                            "y" if len(self.special) == 1 else "ies",
                            "is" if len(self.special) == 1 else "are", _first(self.special))
        if self.repeated:
            named = [f"{link} -> {target}" for link, target in self.repeated]
            _logger.warning("%s: %d folder link%s lead%s to a folder already listed, not followed again "
                            "(a link loop would list every image many times): %s", root, len(named),
                            "" if len(named) == 1 else "s", "s" if len(named) == 1 else "", _first(named))


def _first(names: Sequence[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _images_under(class_dir: Path, skipped: _Skipped) -> list[str]:
    """Image paths under one class folder, in torchvision's order (``sorted(os.walk(...))``, file
    names sorted), each folder visited once by (st_dev, st_ino), regular files only."""
    listed: list[tuple[str, list[str]]] = []
    first_path: dict[tuple[int, int], str] = {}
    pending = [str(class_dir)]  # a heap: the smallest path first, so which path of a folder counts is stable
    while pending:
        folder = heapq.heappop(pending)
        try:
            st = os.stat(folder)
            with os.scandir(folder) as found:
                entries = list(found)
        except OSError as err:  # as os.walk does: an unreadable folder is left out
            _logger.warning("cannot list %s (%s); its images are left out", folder, err.strerror)
            continue
        key = (st.st_dev, st.st_ino)
        if key in first_path:
            skipped.repeated.append((folder, first_path[key]))
            continue
        first_path[key] = folder
        names = []
        for entry in entries:
            if _is_dir(entry):
                heapq.heappush(pending, entry.path)
            elif entry.name.lower().endswith(IMG_EXTENSIONS):
                if _is_special(entry):
                    skipped.special.append(entry.path)
                else:
                    names.append(entry.name)
        listed.append((folder, names))
    return [os.path.join(folder, name) for folder, names in sorted(listed) for name in sorted(names)]


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows links, as os.walk(followlinks=True) does
    except OSError:
        return False


def _is_special(entry: os.DirEntry[str]) -> bool:
    """True for a FIFO, socket or device (also behind a link). ``is_file`` costs no system call
    for a plain entry; a dangling link stays listed, so that verification names it as missing."""
    if entry.is_file():
        return False
    try:
        entry.stat()
    except OSError:
        return False
    return True


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
    names = [f.removeprefix(prefix) if prefix else os.path.relpath(f, folder) for f in data.files]
    refused = unlistable_names(names, 0, "")
    if refused:  # DALI (and read_file_list) would read another name, or fail
        shown = "; ".join(f"{data.files[i]!r}: {reason}" for i, reason in list(refused.items())[:3])
        raise DatasetError(f"cannot write {path}: {len(refused)} name(s) a file list cannot hold: {shown} "
                           "(python -m dali_pipelines verify refuses them too)")
    with atomic_write(path, encoding="utf-8") as handle:
        handle.writelines(f"{name} {label}\n" for name, label in zip(names, data.labels, strict=True))
    return path


def read_file_list(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None,
                   classes: Sequence[str] | None = None) -> ImageFolderData:
    """Read a DALI file list; paths are joined to ``root`` (DALI's ``file_root``), by default
    the list's own folder, as DALI joins them."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"file list {path} does not exist")
    base = (Path(root) if root is not None else path.parent).resolve()  # once, not per file
    files, labels = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        name, _, label = line.rstrip().rpartition(" ")
        if not name or not (label.isascii() and label.isdigit()):
            raise DatasetError(f"{path}:{number}: expected '<path> <integer label>', got {line!r}")
        if int(label) >= MAX_CLASSES:
            raise DatasetError(f"{path}:{number}: label {label} is above {MAX_CLASSES - 1}; labels are "
                               "class indices from 0")
        files.append(os.path.normpath(os.path.join(base, name)))
        labels.append(int(label))
    if not files:
        raise DatasetError(f"file list {path} is empty")
    names = tuple(classes) if classes is not None else tuple(str(i) for i in range(max(labels) + 1))
    return ImageFolderData(root=base, files=tuple(files), labels=tuple(labels), classes=names)
