"""Reading the contest's files: image folders and the JSON of per-character labels and boxes, validated.

``mchar_train/`` + ``mchar_train.json``, ``mchar_val/`` + ``mchar_val.json``, ``mchar_test_a/`` (no labels). Every
problem the reader can see without decoding an image is a :class:`~common.errors.UserError` naming the file: a JSON
that does not parse or is not a mapping, an entry without the five lists or with lists of differing lengths, an
empty label list, a label outside 0..9, a file name that is not a plain name inside its folder (``../x.png``), an
image listed but missing, an image present but not listed, an empty test folder. Images that fail to decode are
found when they are cached (:mod:`.cache`): fatal for labelled images, a warning and a blank image for test ones.

Each labelled image's per-digit boxes (left, top, width, height, in the original image's pixels, one per label in
the JSON's order) are kept beside its label for the models that train on them (the detector); a box value that is
not a finite number is an error here, boxes of no area or outside their image are refused by the detector's own
check (:mod:`.boxes`), so the other models still train on such data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from common.errors import UserError

TRAIN_DIR, TRAIN_JSON = "mchar_train", "mchar_train.json"
VAL_DIR, VAL_JSON = "mchar_val", "mchar_val.json"
TEST_DIRS = ("mchar_test_a", "mchar_test_b")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BOX_KEYS = ("height", "label", "left", "top", "width")


@dataclass(frozen=True)
class ImageFolder:
    """Image files of one split in name order; ``labels`` holds digit strings ("19") for labelled splits, ``boxes``
    their digits' boxes."""

    folder: Path
    names: np.ndarray
    labels: np.ndarray | None = None
    #: per image (in ``names`` order) a float (k, 4) array of its k digits' left, top, width, height
    boxes: tuple[np.ndarray, ...] | None = None

    @property
    def paths(self) -> list[Path]:
        return [self.folder / n for n in self.names]


def check_name(name: str, source: Path) -> str:
    """A file name must be a plain name inside its folder: no separators, no ``..``, not absolute."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or len(PurePosixPath(name).parts) != 1
        or len(PureWindowsPath(name).parts) != 1
        or "\x00" in name
    ):
        raise UserError(f"{source}: file name {name!r} is not a plain file name inside the image folder")
    return name


def list_images(folder: Path) -> list[str]:
    """Names of the image files directly in ``folder``, sorted. A symbolic link that leads outside the folder is
    refused, like a file name that escapes it: a data folder is read as what it contains."""
    names = []
    root = folder.resolve()
    for p in folder.iterdir():
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.is_symlink() and not p.resolve().is_relative_to(root):
            raise UserError(
                f"{p}: a symbolic link to {p.resolve()}, outside {folder}; copy the image into the folder"
            )
        if p.is_file():
            names.append(p.name)
    return sorted(names)


def _annotation_of(name: str, entry, source: Path) -> tuple[str, np.ndarray]:
    """The digit string and the (k, 4) left, top, width, height boxes of one JSON entry."""
    where = f"{source}: entry {name!r}"
    if not isinstance(entry, dict):
        raise UserError(f"{where} is {type(entry).__name__}; expected an object with lists {list(BOX_KEYS)}")
    missing = [k for k in BOX_KEYS if k not in entry]
    if missing:
        raise UserError(f"{where} lacks key(s) {missing}; expected {list(BOX_KEYS)}")
    lists = {k: entry[k] if isinstance(entry[k], list) else [entry[k]] for k in BOX_KEYS}
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise UserError(f"{where} has lists of differing lengths {lengths}; expected one value per character")
    if lengths["label"] == 0:
        raise UserError(f"{where} has no characters; expected at least one label")
    digits = []
    for value in lists["label"]:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise UserError(f"{where} has label {value!r}; expected integers 0..9")
        if not 0 <= int(value) <= 9:
            raise UserError(f"{where} has label {int(value)}; expected integers 0..9")
        digits.append(str(int(value)))
    for key in ("height", "left", "top", "width"):
        for value in lists[key]:
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
                raise UserError(f"{where} has {key} {value!r}; expected finite numbers")
    boxes = np.array([lists[k] for k in ("left", "top", "width", "height")], dtype=np.float64).T
    return "".join(digits), boxes.reshape(-1, 4)


def read_labels(json_path: Path) -> dict[str, str]:
    """File name -> digit string, from one of the contest's label JSON files."""
    return {name: digits for name, (digits, _) in read_annotations(json_path).items()}


def read_annotations(json_path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """File name -> (digit string, (k, 4) boxes: left, top, width, height), from a label JSON file."""
    if not json_path.is_file():
        raise UserError(f"label file not found: {json_path}")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{json_path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(
            f"{json_path}: expected an object mapping file name -> boxes, got {type(data).__name__}"
        )
    return {
        check_name(name, json_path): _annotation_of(name, entry, json_path) for name, entry in data.items()
    }


def read_labelled(data_dir: Path, folder_name: str, json_name: str) -> ImageFolder:
    """A labelled split: the JSON and the folder must name exactly the same images."""
    folder, json_path = data_dir / folder_name, data_dir / json_name
    if not folder.is_dir():
        raise UserError(f"image folder not found: {folder}")
    labels = read_annotations(json_path)
    present = set(list_images(folder))
    missing = sorted(set(labels) - present)
    if missing:
        raise UserError(f"{folder / missing[0]}: listed in {json_path} but missing ({len(missing)} missing)")
    unlisted = sorted(present - set(labels))
    if unlisted:
        raise UserError(
            f"{folder / unlisted[0]}: present but not listed in {json_path} ({len(unlisted)} unlisted)"
        )
    if not labels:
        raise UserError(f"{json_path}: no images listed")
    names = sorted(labels)
    return ImageFolder(
        folder,
        np.array(names),
        np.array([labels[n][0] for n in names]),
        tuple(labels[n][1] for n in names),
    )


def read_unlabelled(folder: Path) -> ImageFolder:
    """A test split: every image file of the folder, in name order; an empty folder is an error."""
    if not folder.is_dir():
        raise UserError(f"test image folder not found: {folder}")
    names = list_images(folder)
    if not names:
        raise UserError(f"{folder}: no images (expected {', '.join(IMAGE_SUFFIXES)} files)")
    return ImageFolder(folder, np.array(names))
