"""The digits data and the CelebA / attribute-folder loaders, on tiny fixtures written in the
exact file formats."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conceptalg.data import digits as digits_module
from conceptalg.data.attributes import (CELEBA_ATTRIBUTES, DataFormatError, load_attribute_folder,
                                        load_celeba, read_attribute_table, read_partition)
from conceptalg.data.digits import CONCEPTS, DigitsDataset, load_digits
from conceptalg.errors import ConceptAlgError, UnknownConceptError

# --------------------------------------------------------------------------- digits


def test_digits():
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert images.min() == 0 and images.max() == 1
    assert labels.dtype == torch.long and set(labels.tolist()) == set(range(10))
    assert (labels.bincount() > 170).all()
    from sklearn.datasets import load_digits as reference
    np.testing.assert_allclose(images[:, 0].numpy(), reference().images / 16.0, rtol=0, atol=1e-7)
    assert CONCEPTS == tuple(f"digit={d}" for d in range(10))


@pytest.mark.parametrize("resolution", [16, 32, 4])
def test_digits_resized(resolution):
    images, labels = load_digits(resolution)
    assert images.shape == (1797, 1, resolution, resolution)
    assert images.min() >= 0 and images.max() <= 1
    # resizing keeps the ink where it was: mean intensity is about preserved
    assert abs(float(images.mean()) - float(load_digits()[0].mean())) < 0.02


def test_digits_splits():
    train, test = DigitsDataset(split="train"), DigitsDataset(split="test")
    assert len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    every = DigitsDataset().images.reshape(1797, -1)
    rows = {tuple(r) for r in torch.cat([train.images, test.images]).reshape(1797, -1).tolist()}
    assert rows == {tuple(r) for r in every.tolist()}
    image, label = train[0]
    assert image.shape == (1, 8, 8) and 0 <= int(label) <= 9
    assert torch.equal(DigitsDataset(split="test").images, test.images)
    with pytest.raises(ValueError, match="split"):
        DigitsDataset(split="valid")


def test_digits_without_scikit_learn(monkeypatch):
    digits_module._bundled.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    try:
        with pytest.raises(ImportError, match=r"conceptalg\[digits\]"):
            load_digits()
    finally:
        digits_module._bundled.cache_clear()


# --------------------------------------------------------------------------- CelebA fixtures

NAMES = ["img%06d.jpg" % i for i in range(1, 7)]
PARTITION = [0, 0, 1, 2, 0, 2]
RNG = np.random.default_rng(0)
SIGNS = RNG.choice([-1, 1], size=(6, 40))


def _images(folder, names, size=(18, 22)):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        array = np.full((size[1], size[0], 3), 40 * i, dtype=np.uint8)
        array[size[1] // 2:, :, 0] = 250  # bottom half red: checks orientation after the crop
        Image.fromarray(array).save(folder / name)


def _celeba_txt(root, folders=("", "", "")):
    anno, evals, img = (root / f if f else root for f in folders)
    anno.mkdir(parents=True, exist_ok=True)
    evals.mkdir(parents=True, exist_ok=True)
    lines = [str(len(NAMES)), " ".join(CELEBA_ATTRIBUTES) + " "]
    for name, row in zip(NAMES, SIGNS):
        lines.append(name + " " + "".join(f"{v:3d}" for v in row))  # '  1 -1  1' as released
    (anno / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (evals / "list_eval_partition.txt").write_text(
        "".join(f"{n} {p}\n" for n, p in zip(NAMES, PARTITION)))
    _images(img / "img_align_celeba", NAMES)
    return root


def _celeba_csv(root):
    root.mkdir(parents=True, exist_ok=True)
    rows = ["image_id," + ",".join(CELEBA_ATTRIBUTES)]
    rows += [n + "," + ",".join(str(v) for v in row) for n, row in zip(NAMES, SIGNS)]
    (root / "list_attr_celeba.csv").write_text("\n".join(rows) + "\n")
    (root / "list_eval_partition.csv").write_text(
        "image_id,partition\n" + "".join(f"{n},{p}\n" for n, p in zip(NAMES, PARTITION)))
    _images(root / "img_align_celeba" / "img_align_celeba", NAMES)  # Kaggle nests the folder
    return root


LAYOUTS = {
    "txt": lambda tmp: _celeba_txt(tmp / "celeba"),
    "txt-archive": lambda tmp: _celeba_txt(tmp / "celeba", ("Anno", "Eval", "Img")),
    "kaggle-csv": lambda tmp: _celeba_csv(tmp / "celeba"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_celeba_all_and_mapping(tmp_path, layout):
    root = LAYOUTS[layout](tmp_path)
    data = load_celeba(root, split="all", resolution=8, crop=None)
    assert len(data) == 6 and data.attribute_names == CELEBA_ATTRIBUTES
    assert torch.equal(data.attributes, torch.tensor((SIGNS + 1) // 2))
    image, attrs = data[2]
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert image[0, -1].mean() > 0.9 and image[0, 0].mean() < 0.5, "bottom half red"
    assert torch.equal(attrs, torch.tensor((SIGNS[2] + 1) // 2))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("split,code", [("train", 0), ("valid", 1), ("val", 1), ("test", 2)])
def test_celeba_partitions(tmp_path, layout, split, code):
    data = load_celeba(LAYOUTS[layout](tmp_path), split=split, attributes=["Smiling", "Male"],
                       resolution=None, crop=14)
    keep = [i for i, p in enumerate(PARTITION) if p == code]
    assert data.table.filenames == tuple(NAMES[i] for i in keep)
    columns = [CELEBA_ATTRIBUTES.index("Smiling"), CELEBA_ATTRIBUTES.index("Male")]
    assert torch.equal(data.attributes, torch.tensor((SIGNS[keep][:, columns] + 1) // 2))
    assert data[0][0].shape == (3, 14, 14)  # crop without resize


def test_read_partition_both_formats(tmp_path):
    txt = _celeba_txt(tmp_path / "a") / "list_eval_partition.txt"
    csv = _celeba_csv(tmp_path / "b") / "list_eval_partition.csv"
    expected = dict(zip(NAMES, PARTITION))
    assert read_partition(txt) == expected == read_partition(csv)


@pytest.mark.parametrize("values,expected", [
    ([[0, 1], [1, 0]], [[0, 1], [1, 0]]),
    ([[-1, 1], [1, -1]], [[0, 1], [1, 0]]),
], ids=["zero-one", "minus-one-one"])
def test_attribute_folder(tmp_path, values, expected):
    _images(tmp_path / "faces", ["a.png", "b.png"], size=(10, 10))
    rows = "".join(f"{n},{v[0]},{v[1]}\n" for n, v in zip(["a.png", "b.png"], values))
    (tmp_path / "faces" / "attributes.csv").write_text("filename,smiling,glasses\n" + rows)
    data = load_attribute_folder(tmp_path / "faces", resolution=4)
    assert data.attribute_names == ("smiling", "glasses")
    assert data.attributes.tolist() == expected
    assert data[1][0].shape == (3, 4, 4)
    only = load_attribute_folder(tmp_path / "faces", tmp_path / "faces" / "attributes.csv",
                                 attributes=["glasses"])
    assert only.attributes.tolist() == [[r[1]] for r in expected]


# --------------------------------------------------------------------------- error paths


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


HEADER_TXT = "2\nSmiling Male\n"
BAD_FILES = [
    ("a.txt", HEADER_TXT + "x.jpg 1 -1\ny.jpg 1\n", DataFormatError, r"line 4: expected 3 fields"),
    ("a.txt", HEADER_TXT + "x.jpg 1 -1\ny.jpg 1 0\n", DataFormatError,
     r"line 4: attribute 'Male' is '0', expected -1 or 1"),
    ("a.txt", "3\nSmiling Male\nx.jpg 1 -1\n", DataFormatError, r"line 1: says 3 images"),
    ("a.txt", "many\nSmiling\n", DataFormatError, r"line 1: expected the number of images"),
    ("a.txt", "1\nSmiling Smiling\nx.jpg 1 1\n", DataFormatError, r"line 2: .*appears twice"),
    ("a.txt", "2\nSmiling\nx.jpg 1\nx.jpg -1\n", DataFormatError, r"'x.jpg' is listed twice"),
    ("a.csv", "filename,Smiling\nx.jpg,1,1\n", DataFormatError, r"line 2: expected 2 fields"),
    ("a.csv", "filename,Smiling\nx.jpg,yes\n", DataFormatError, r"line 2: attribute 'Smiling'"),
    ("a.csv", "filename,Smiling\nx.jpg,-1\n\ny.jpg,0\n", DataFormatError,
     r"line 4: attribute 'Smiling' is 0, but the file uses -1/1"),
    ("a.csv", "", DataFormatError, r"empty"),
    ("a.csv", "filename\n", DataFormatError, r"at least one attribute"),
]


@pytest.mark.parametrize("name,text,error,message", BAD_FILES,
                         ids=[f"{i}-{m[:20]}" for i, (_, _, _, m) in enumerate(BAD_FILES)])
def test_bad_attribute_files(tmp_path, name, text, error, message):
    path = _write(tmp_path / name, text)
    with pytest.raises(error, match=message) as caught:
        read_attribute_table(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, (ConceptAlgError, ValueError))


@pytest.mark.parametrize("name,text,message", [
    ("p.txt", "x.jpg 0\ny.jpg 3\n", r"line 2: attribute 'partition' is '3'"),
    ("p.txt", "x.jpg 0 1\n", r"line 1: expected 'filename partition'"),
    ("p.csv", "image_id,partition,extra\nx.jpg,0,1\n", r"line 1: expected the header"),
], ids=["bad-code", "extra-field", "bad-header"])
def test_bad_partition_files(tmp_path, name, text, message):
    with pytest.raises(DataFormatError, match=message):
        read_partition(_write(tmp_path / name, text))


@pytest.mark.parametrize("wrong,suggestion", [("smiling", "'Smiling'"), ("Smilng", "'Smiling'"),
                                              ("Eyeglass", "'Eyeglasses'"), ("zzz", None)])
def test_unknown_attribute_did_you_mean(tmp_path, wrong, suggestion):
    root = _celeba_txt(tmp_path / "celeba")
    with pytest.raises(UnknownConceptError, match=f"unknown attribute '{wrong}'") as caught:
        load_celeba(root, attributes=["Male", wrong])
    if suggestion:
        assert f"did you mean {suggestion}" in str(caught.value)
    else:
        assert "did you mean" not in str(caught.value)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="CelebA folder not found"):
        load_celeba(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="list_attr_celeba.txt"):
        load_celeba(tmp_path / "empty")
    root = _celeba_txt(tmp_path / "celeba")
    (root / "list_eval_partition.txt").unlink()
    assert len(load_celeba(root, split="all")) == 6  # the partition is only needed to split
    with pytest.raises(FileNotFoundError, match="partition file not found.*list_eval_partition"):
        load_celeba(root, split="test")
    with pytest.raises(FileNotFoundError, match="attribute file not found"):
        read_attribute_table(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="attributes.csv"):
        load_attribute_folder(tmp_path / "empty")


def test_missing_images_and_partition_rows(tmp_path):
    root = _celeba_txt(tmp_path / "celeba")
    (root / "img_align_celeba" / NAMES[3]).unlink()
    data = load_celeba(root, split="all")
    with pytest.raises(FileNotFoundError, match=NAMES[3]):
        data[3]
    (root / "img_align_celeba" / NAMES[0]).unlink()
    with pytest.raises(FileNotFoundError, match=NAMES[0]):
        load_celeba(root, split="all")
    root = _celeba_txt(tmp_path / "celeba2")
    (root / "list_eval_partition.txt").write_text(f"{NAMES[0]} 0\n")
    with pytest.raises(DataFormatError, match=f"does not list 5 image.*{NAMES[1]}"):
        load_celeba(root, split="train")
    with pytest.raises(ValueError, match="split must be"):
        load_celeba(root, split="training")
    with pytest.raises(ValueError, match="resolution"):
        load_celeba(root, split="all", resolution=0)


def test_csv_with_quoted_names_and_blank_lines(tmp_path):
    # quoting sends the file through the careful csv reader; both readers must agree
    quoted = _write(tmp_path / "q.csv", 'filename,a,b\n"x, 1.png",1,-1\n\ny.png,-1,-1\n')
    plain = _write(tmp_path / "p.csv", "filename,a,b\nx.png,1,-1\n\ny.png,-1,-1\n")
    for path, first in [(quoted, "x, 1.png"), (plain, "x.png")]:
        table = read_attribute_table(path)
        assert table.filenames == (first, "y.png")
        assert table.values.tolist() == [[1, 0], [0, 0]]
