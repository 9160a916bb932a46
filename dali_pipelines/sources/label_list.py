"""Label lists: a (path, label) file as a data source, in CSV / TSV or DALI's file-list format.

CSV (``.csv``, comma-separated) and TSV (``.tsv``, tab-separated), read with Python's ``csv``
module, so a path holding the delimiter is written in double quotes:

- **Header, optional.** When a cell of the first row is ``path``, that row names the columns:
  ``path`` (required), ``label`` (an integer class index) and ``class`` (a class name), at
  least one of the last two; other columns are ignored. Without a header the columns are
  ``path,label`` or ``path,label,class``.
- **Labels.** A ``label`` column whose every value is a non-negative integer holds class
  indices; without a header, a second column holding anything else holds class names.
  Classes of names alone are sorted as torchvision sorts class folders; of indices alone they
  are named ``0`` .. ``max``; with both, each index has one name, each name one index, and
  every index from 0 to the largest appears.
- **Paths** are relative to the list's folder, or to ``root`` when one is given; absolute
  paths are taken as they are.

Any other file is a DALI file list (``<path> <integer label>`` per line), which
``fn.readers.file(file_list=...)`` reads too; see ``image_folder.read_file_list``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from dali_pipelines.errors import DatasetError
from dali_pipelines.sources.image_folder import MAX_CLASSES, ImageFolderData, read_file_list

CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}  # by suffix; any other list is a DALI file list
_COLUMNS = ("path", "label", "class")


def read_label_list(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
                    ) -> ImageFolderData:
    """The data set a label list names: CSV / TSV by suffix, else a DALI file list."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"label list {path} does not exist or is not a file")
    if root is not None and not Path(root).is_dir():
        raise DatasetError(f"list root {root} is not a folder; pass the folder the paths of {path} "
                           "start from")
    try:
        if path.suffix.lower() in CSV_DELIMITERS:
            return _read_csv(path, Path(root) if root is not None else path.parent)
        return read_file_list(path, root=root)
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not a text file; a label list is UTF-8 text (docs/data.md)") from None


def _read_csv(path: Path, base: Path) -> ImageFolderData:
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a BOM from spreadsheets
        reader = csv.reader(handle, delimiter=CSV_DELIMITERS[path.suffix.lower()])
        rows = [(reader.line_num, [cell.strip() for cell in row]) for row in reader
                if any(cell.strip() for cell in row)]
    if not rows:
        raise DatasetError(f"label list {path} is empty")
    columns, rows, header = _columns(path, rows)
    empty = next((number for number, row in rows if not row[columns["path"]]), None)
    if empty is not None:
        raise DatasetError(f"{path}:{empty}: the path is empty")
    base = base.resolve()  # once; each path is joined to it as DALI's file_root joins them
    files = tuple(os.path.normpath(os.path.join(base, row[columns["path"]])) for _, row in rows)
    names_here = not header and "class" not in columns  # header-less path,label: names or indices
    indices = _indices(path, rows, columns.get("label"), names_allowed=names_here)
    names = [row[columns["class"]] for _, row in rows] if "class" in columns else None
    if indices is None and names is None:
        names = [row[columns["label"]] for _, row in rows]
    labels, classes = _labels_and_classes(path, rows, indices, names)
    return ImageFolderData(root=base, files=files, labels=labels, classes=classes)


def _columns(path: Path, rows: list[tuple[int, list[str]]]
             ) -> tuple[dict[str, int], list[tuple[int, list[str]]], bool]:
    """Column positions by name, the data rows (without a header) and whether there was one."""
    first = [cell.lower() for cell in rows[0][1]]
    header = "path" in first
    if header:
        named = {name: first.index(name) for name in _COLUMNS if name in first}
        repeated = sorted({cell for cell in first if cell in _COLUMNS and first.count(cell) > 1})
        if repeated:
            raise DatasetError(f"{path}:{rows[0][0]}: the header names {', '.join(repeated)} twice")
        if "label" not in named and "class" not in named:
            raise DatasetError(f"{path}:{rows[0][0]}: the header has a path column but neither label "
                               "(a class index) nor class (a class name)")
        width, body = len(first), rows[1:]
        if not body:
            raise DatasetError(f"label list {path} has a header and no rows")
    else:
        width, body = len(first), rows
        if width not in (2, 3):
            raise DatasetError(f"{path}:{rows[0][0]}: expected path,label or path,label,class (or a header "
                               f"naming the columns), got {width} columns")
        named = {"path": 0, "label": 1} | ({"class": 2} if width == 3 else {})
    for number, row in body:
        if len(row) != width:
            raise DatasetError(f"{path}:{number}: expected {width} columns like the "
                               f"{'header' if header else 'first row'}, got {len(row)}")
    return named, body, header


def _indices(path: Path, rows: Sequence[tuple[int, list[str]]], column: int | None, *,
             names_allowed: bool) -> list[int] | None:
    """The label column as class indices; None when it may hold names and does."""
    if column is None:
        return None
    cells = [(number, row[column]) for number, row in rows]
    bad = next(((n, c) for n, c in cells if not (c.isascii() and c.isdigit())), None)
    if bad is not None:
        if names_allowed:
            return None
        raise DatasetError(f"{path}:{bad[0]}: the label column holds class indices (0, 1, ...), got "
                           f"{bad[1]!r}; name classes in a class column")
    indices = [int(c) for _, c in cells]
    if max(indices) >= MAX_CLASSES:
        number = next(n for (n, _), i in zip(cells, indices, strict=True) if i >= MAX_CLASSES)
        raise DatasetError(f"{path}:{number}: label {max(indices)} is above {MAX_CLASSES - 1}; labels are "
                           "class indices from 0")
    return indices


def _labels_and_classes(path: Path, rows: Sequence[tuple[int, list[str]]], indices: list[int] | None,
                        names: list[str] | None) -> tuple[tuple[int, ...], tuple[str, ...]]:
    if names is not None and any(not name for name in names):
        number = next(n for (n, _), name in zip(rows, names, strict=True) if not name)
        raise DatasetError(f"{path}:{number}: the class name is empty")
    if indices is None:
        assert names is not None
        classes = tuple(sorted(set(names)))
        position = {name: i for i, name in enumerate(classes)}
        return tuple(position[name] for name in names), classes
    if names is None:
        return tuple(indices), tuple(str(i) for i in range(max(indices) + 1))
    return tuple(indices), _named_indices(path, rows, indices, names)


def _named_indices(path: Path, rows: Sequence[tuple[int, list[str]]], indices: list[int],
                   names: list[str]) -> tuple[str, ...]:
    """Class names by index, when a list gives both: one name per index and one index per name."""
    by_index: dict[int, str] = {}
    by_name: dict[str, int] = {}
    for (number, _), index, name in zip(rows, indices, names, strict=True):
        if by_index.setdefault(index, name) != name:
            raise DatasetError(f"{path}:{number}: label {index} is class {name!r} here and "
                               f"{by_index[index]!r} above; one index names one class")
        if by_name.setdefault(name, index) != index:
            raise DatasetError(f"{path}:{number}: class {name!r} has label {index} here and "
                               f"{by_name[name]} above; one class has one index")
    gaps = [i for i in range(max(by_index) + 1) if i not in by_index]
    if gaps:
        raise DatasetError(f"{path}: no row has label {', '.join(map(str, gaps[:5]))}, so its class name is "
                           "unknown; list every class, or drop the label column to match classes by name")
    return tuple(by_index[i] for i in range(len(by_index)))
