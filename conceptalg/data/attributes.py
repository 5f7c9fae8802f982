"""Loaders for attribute-labelled image folders on the user's disk: CelebA and any image folder
with an attribute CSV. Nothing downloads; images are read lazily with PIL.

CelebA comes in two layouts, both read here:

- the official text files: ``list_attr_celeba.txt`` (line 1 the image count, line 2 the 40
  attribute names, then ``000001.jpg  -1  1 ...`` separated by any whitespace) and
  ``list_eval_partition.txt`` (``000001.jpg 0``), images in ``img_align_celeba/``; the files may
  also sit in the archive's ``Anno/``, ``Eval/`` and ``Img/`` folders;
- the Kaggle CSV files: ``list_attr_celeba.csv`` (header ``image_id,5_o_Clock_Shadow,...``) and
  ``list_eval_partition.csv`` (header ``image_id,partition``), images in
  ``img_align_celeba/img_align_celeba/`` or ``img_align_celeba/``.

Labels ``-1/1`` map to ``{0, 1}`` by ``(v + 1) // 2``; partitions 0/1/2 are train/valid/test. A
generic attribute CSV has the header ``filename,attr1,attr2,...`` and either 0/1 or -1/1 values.
An image becomes a float tensor ``[3, R, R]`` in ``[0, 1]``: a centred square crop (side
``crop`` pixels, default the shorter side), then a bilinear resize to ``resolution``.
"""

from __future__ import annotations

import csv
import difflib
import gc
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import ConceptAlgError, UnknownConceptError

__all__ = [
    "CELEBA_ATTRIBUTES", "PARTITIONS", "DataFormatError", "AttributeTable",
    "read_attribute_table", "read_partition", "AttributeImageDataset", "load_celeba",
    "load_attribute_folder",
]

CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
#: CelebA's partition codes.
PARTITIONS: dict[str, int] = {"train": 0, "valid": 1, "test": 2}
_SPLIT_ALIASES = {"val": "valid", "validation": "valid"}


class DataFormatError(ConceptAlgError, ValueError):
    """A data file that does not follow its format; the message names the file and line."""


@dataclass(frozen=True)
class AttributeTable:
    """Binary attributes of a list of images: ``values[i, k]`` (0/1) is attribute ``names[k]``
    of image ``filenames[i]``."""

    filenames: tuple[str, ...]
    names: tuple[str, ...]
    values: Tensor  # [N, A] long 0/1

    def select(self, attributes: Sequence[str] | None) -> "AttributeTable":
        """The table restricted to ``attributes`` (in that order); ``None`` keeps all.

        Unknown names raise :class:`~conceptalg.errors.UnknownConceptError` with a did-you-mean.
        """
        if attributes is None:
            return self
        if isinstance(attributes, str):
            attributes = [attributes]
        columns = [self._column(a) for a in attributes]
        return AttributeTable(self.filenames, tuple(self.names[c] for c in columns),
                              self.values[:, columns])

    def _column(self, name: str) -> int:
        if name in self.names:
            return self.names.index(name)
        folded = {n.lower(): n for n in self.names}
        close = ([folded[name.lower()]] if name.lower() in folded else
                 difflib.get_close_matches(name, self.names, n=3, cutoff=0.6))
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise UnknownConceptError(f"unknown attribute {name!r}{hint} (the {len(self.names)} "
                                  f"attributes: {', '.join(self.names)})")

    def rows(self, filenames: Sequence[str]) -> "AttributeTable":
        """The table restricted to the given image files, in their order."""
        index = {f: i for i, f in enumerate(self.filenames)}
        keep = [index[f] for f in filenames]
        return AttributeTable(tuple(filenames), self.names, self.values[keep])


def _binary(value: str, path: Path, line: int, column: str, allowed: set[int]) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number not in allowed:
        expect = " or ".join(str(a) for a in sorted(allowed))
        raise DataFormatError(f"{path} line {line}: attribute {column!r} is {value!r}, "
                              f"expected {expect}")
    return number


def _fast_rows(lines: list[str], delimiter: str | None, width: int,
               allowed: set[int]) -> tuple[list[str], np.ndarray] | None:
    """``(filenames, values [N, width])`` parsed by numpy's C reader (CelebA has 8 million
    labels), or None when anything is unusual; the careful parser then finds and names it."""
    lines = [line for line in lines if line.strip()]
    body = "\n".join(lines)
    if not lines or (delimiter == "," and '"' in body):
        return None
    try:
        values = np.loadtxt(lines, delimiter=delimiter, usecols=range(1, width + 1),
                            dtype=np.int64, comments=None, ndmin=2)
        names = np.loadtxt(lines, delimiter=delimiter, usecols=0, dtype=str, comments=None,
                           ndmin=1)
    except ValueError:  # a short row or a bad number
        return None
    n = values.shape[0]
    # loadtxt ignores extra fields: no row is short, so equal totals mean none is long either
    fields = body.count(",") + n if delimiter == "," else len(body.split())
    known = np.zeros(values.shape, dtype=bool)
    for value in allowed:
        known |= values == value
    if fields != n * (width + 1) or len(names) != n or not known.all():
        return None
    return [name.strip() for name in names.tolist()], values


@contextmanager
def _no_gc():
    """Pause the cyclic garbage collector: parsing makes one small list per line, and the
    collections they trigger (which find nothing) would double the parsing time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _careful_matrix(rows: list[tuple[int, list[str]]], names: tuple[str, ...], path: Path,
                    allowed: set[int]) -> np.ndarray:
    return np.array([[_binary(v, path, line, a, allowed) for v, a in zip(cells, names)]
                     for line, cells in rows], dtype=np.int64).reshape(len(rows), len(names))


def _read_celeba_txt(path: Path) -> AttributeTable:
    with open(path, encoding="utf-8-sig") as handle:
        lines = handle.read().splitlines()
    if len(lines) < 2:
        raise DataFormatError(f"{path}: expected the image count on line 1 and the attribute "
                              f"names on line 2, found {len(lines)} line(s)")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataFormatError(f"{path} line 1: expected the number of images, found "
                              f"{lines[0].strip()[:40]!r}") from None
    names = tuple(lines[1].split())
    _check_names(names, path, 2)
    fast = _fast_rows(lines[2:], None, len(names), {-1, 1})
    if fast is not None:
        filenames, values = fast
    else:
        filenames, rows = [], []
        with _no_gc():
            for number, text in enumerate(lines[2:], start=3):
                fields = text.split()
                if not fields:
                    continue
                if len(fields) != len(names) + 1:
                    raise DataFormatError(f"{path} line {number}: expected {len(names) + 1} "
                                          f"fields (a file name and {len(names)} attributes), "
                                          f"found {len(fields)}")
                filenames.append(fields[0])
                rows.append((number, fields[1:]))
            values = _careful_matrix(rows, names, path, {-1, 1})
    if len(filenames) != count:
        raise DataFormatError(f"{path} line 1: says {count} images, the file lists "
                              f"{len(filenames)}")
    return _table(filenames, names, torch.from_numpy((values + 1) // 2), path)


def _read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    with open(path, newline="", encoding="utf-8-sig") as handle, _no_gc():
        reader = csv.reader(handle)
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        raise DataFormatError(f"{path}: the file is empty (expected a header line)")
    header = [cell.strip() for cell in rows[0][1]]
    for number, row in rows[1:]:
        if len(row) != len(header):
            raise DataFormatError(f"{path} line {number}: expected {len(header)} fields as in "
                                  f"the header, found {len(row)}")
    return header, [(n, [c.strip() for c in row]) for n, row in rows[1:]]


def _read_attribute_csv(path: Path) -> AttributeTable:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        lines = handle.read().splitlines()
    header = [c.strip() for c in next(csv.reader(lines[:1]), [])]
    fast = _fast_rows(lines[1:], ",", len(header) - 1, {-1, 0, 1}) if len(header) > 1 else None
    rows = None
    if fast is None:  # the careful reader checks everything and names the line
        header, rows = _read_csv_rows(path)
    if len(header) < 2:
        raise DataFormatError(f"{path} line 1: expected a header 'filename,attr1,...' with at "
                              f"least one attribute, found {','.join(header)!r}")
    names = tuple(header[1:])
    _check_names(names, path, 1)
    if fast is not None:
        filenames, values = fast
    else:
        filenames = [row[0] for _, row in rows]
        values = _careful_matrix([(n, row[1:]) for n, row in rows], names, path, {-1, 0, 1})
    if (values == -1).any():  # the -1/1 convention (CelebA, Kaggle): 0 would be ambiguous
        zero = np.argwhere(values == 0)
        if len(zero):
            i, k = zero[0].tolist()
            line = (rows or _read_csv_rows(path)[1])[i][0]
            raise DataFormatError(f"{path} line {line}: attribute {names[k]!r} is 0, but the "
                                  f"file uses -1/1 labels elsewhere")
        values = (values + 1) // 2
    return _table(filenames, names, torch.from_numpy(values), path)


def _check_names(names: tuple[str, ...], path: Path, line: int) -> None:
    if not names:
        raise DataFormatError(f"{path} line {line}: no attribute names")
    seen = set()
    for name in names:
        if name in seen:
            raise DataFormatError(f"{path} line {line}: attribute {name!r} appears twice")
        seen.add(name)


def _table(filenames, names, values, path: Path) -> AttributeTable:
    seen = set()
    for name in filenames:
        if name in seen:
            raise DataFormatError(f"{path}: image {name!r} is listed twice")
        seen.add(name)
    return AttributeTable(tuple(filenames), tuple(names), values)


def read_attribute_table(path: str | Path) -> AttributeTable:
    """Read attributes from a CelebA ``.txt`` file or an attribute ``.csv`` (module docstring).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
        >>> _ = p.write_text("filename,Smiling\\nx.png,-1\\ny.png,1\\n")
        >>> read_attribute_table(p).values.tolist()
        [[0], [1]]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"attribute file not found: {path}")
    if path.suffix.lower() == ".csv":
        return _read_attribute_csv(path)
    return _read_celeba_txt(path)


def read_partition(path: str | Path) -> dict[str, int]:
    """Read CelebA's partition file (``.txt``: ``000001.jpg 0``; ``.csv``: ``image_id,partition``)
    into ``{filename: 0 | 1 | 2}``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"partition file not found: {path}")
    if path.suffix.lower() == ".csv":
        header, rows = _read_csv_rows(path)
        if len(header) != 2:
            raise DataFormatError(f"{path} line 1: expected the header 'image_id,partition', "
                                  f"found {','.join(header)!r}")
    else:
        with open(path, encoding="utf-8-sig") as handle:
            rows = [(n, text.split()) for n, text in enumerate(handle.read().splitlines(), 1)
                    if text.strip()]
    partition = {}
    for number, fields in rows:
        if len(fields) != 2:
            raise DataFormatError(f"{path} line {number}: expected 'filename partition', found "
                                  f"{len(fields)} fields")
        partition[fields[0]] = _binary(fields[1], path, number, "partition", {0, 1, 2})
    return partition


def _load_image(path: Path, crop: int | None, resolution: int | None) -> Tensor:
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    width, height = image.size
    side = min(width, height) if crop is None else min(int(crop), width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if resolution is not None and resolution != side:
        image = image.resize((resolution, resolution), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0                       # [R, R, 3]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)                    # [3, R, R]


class AttributeImageDataset(Dataset):
    """Images in ``image_dir`` with binary attributes; item ``i`` is ``(image [3, R, R] float32
    in [0, 1], attributes LongTensor [A] of 0/1)``. Images are read when indexed.

    Attributes: ``table`` (an :class:`AttributeTable`: ``filenames``, ``names``, ``values``),
    ``image_dir``, ``resolution``, ``crop``.
    """

    def __init__(self, image_dir: str | Path, table: AttributeTable, resolution: int | None = 64,
                 crop: int | None = None) -> None:
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.image_dir}")
        for name, value in (("resolution", resolution), ("crop", crop)):
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        self.table, self.resolution, self.crop = table, resolution, crop
        if table.filenames and not (self.image_dir / table.filenames[0]).is_file():
            raise FileNotFoundError(f"image file not found: {self.image_dir / table.filenames[0]} "
                                    f"(the first image of the attribute file)")

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return self.table.names

    @property
    def attributes(self) -> Tensor:
        """All labels, LongTensor ``[N, A]`` of 0/1."""
        return self.table.values

    def __len__(self) -> int:
        return len(self.table.filenames)

    def __getitem__(self, index: int):
        path = self.image_dir / self.table.filenames[index]
        return _load_image(path, self.crop, self.resolution), self.table.values[index]

    def __repr__(self) -> str:
        return (f"AttributeImageDataset(n={len(self)}, attributes={len(self.table.names)}, "
                f"image_dir={str(self.image_dir)!r}, resolution={self.resolution})")


def _find(root: Path, names: Sequence[str], what: str, folders: Sequence[str]) -> Path:
    tried = [root / folder / name for folder in folders for name in names]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{what} not found under {root}; looked for "
                            + ", ".join(str(p.relative_to(root)) for p in tried))


def load_celeba(root: str | Path, split: str = "train", attributes: Sequence[str] | None = None,
                resolution: int | None = 64, crop: int | None = 140) -> AttributeImageDataset:
    """CelebA from a local copy at ``root`` in the official txt or the Kaggle CSV layout.

    ``split`` is ``"train"``, ``"valid"`` (or ``"val"``), ``"test"`` or ``"all"``;
    ``attributes`` selects and orders attribute columns (default all 40); images are
    centre-cropped to ``crop`` pixels (140 of the aligned 178×218 keeps the face) and resized.

    Example:
        >>> data = load_celeba("~/data/celeba", split="test", attributes=["Smiling", "Male"])
        ... # doctest: +SKIP
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"CelebA folder not found: {root}")
    split = _SPLIT_ALIASES.get(split, split)
    if split not in PARTITIONS and split != "all":
        raise ValueError(f"split must be 'train', 'valid', 'test' or 'all', got {split!r}")
    table = read_attribute_table(_find(root, ["list_attr_celeba.txt", "list_attr_celeba.csv"],
                                       "CelebA attribute file", [".", "Anno"]))
    if split != "all":
        partition = read_partition(_find(root, ["list_eval_partition.txt",
                                                "list_eval_partition.csv"],
                                         "CelebA partition file", [".", "Eval"]))
        missing = [f for f in table.filenames if f not in partition]
        if missing:
            raise DataFormatError(f"the partition file does not list {len(missing)} image(s) of "
                                  f"the attribute file, e.g. {missing[0]!r}")
        table = table.rows([f for f in table.filenames if partition[f] == PARTITIONS[split]])
    image_dir = next((d for d in (root / "img_align_celeba" / "img_align_celeba",
                                  root / "img_align_celeba", root / "Img" / "img_align_celeba")
                      if d.is_dir()), root / "img_align_celeba")
    return AttributeImageDataset(image_dir, table.select(attributes), resolution, crop)


def load_attribute_folder(image_dir: str | Path, csv_path: str | Path | None = None,
                          attributes: Sequence[str] | None = None, resolution: int | None = 64,
                          crop: int | None = None) -> AttributeImageDataset:
    """Any image folder with an attribute CSV (``filename,attr1,...``, 0/1 or -1/1 values);
    ``csv_path`` defaults to ``image_dir/attributes.csv``.

    Example:
        >>> data = load_attribute_folder("faces/", attributes=["smiling"])  # doctest: +SKIP
    """
    image_dir = Path(image_dir).expanduser()
    csv_path = image_dir / "attributes.csv" if csv_path is None else Path(csv_path).expanduser()
    table = read_attribute_table(csv_path)
    return AttributeImageDataset(image_dir, table.select(attributes), resolution, crop)
