"""MultiMNIST and MultiFashion-MNIST, the two-item image benchmarks of the DSelect-k paper.

Each example is a 36 x 36 canvas holding two 28 x 28 items: the first with its top-left corner at
(0, 0), the second with its bottom-right corner at (35, 35), so they overlap in the central 20 x 20
square, where the brighter pixel wins. The two tasks are the 10-way classes of the top-left and the
bottom-right item. The second item of each example is another image of the same split, drawn with a
fixed seed. Training and validation canvases come from the 60,000 training images (the validation
images are held out before pairing, so no image appears in both), test canvases from the 10,000
test images.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict

from .sources import DataSource, SourceFile, locate_dataset

SPLITS = ("train", "validation", "test")

CANVAS_SIZE = 36
ITEM_SIZE = 28
MULTI_MNIST_TASKS = ("top_left", "bottom_right")
#: Per-pixel tasks built from the same canvases (`pixel_labels`): the class under each pixel, and which item.
MULTI_MNIST_DENSE_TASKS = ("pixel_class", "pixel_item")
#: The ``pixel_class`` of a pixel no item covers; the items' classes are 0-9.
BACKGROUND_CLASS = 10
#: Every task the canvases give, as `moezoo.TaskSpec` dicts: the two items' classes, then the dense tasks.
MULTI_MNIST_TASK_SPECS = (
    *({"name": name, "kind": "multiclass", "num_labels": 10} for name in MULTI_MNIST_TASKS),
    {"name": "pixel_class", "kind": "multiclass", "num_labels": BACKGROUND_CLASS + 1},
    {"name": "pixel_item", "kind": "multiclass", "num_labels": 3},
)
#: The brightness (0-255) from which a pixel counts as covered by an item.
INK_THRESHOLD = 128
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
#: The official files' checksums, as ../shared/data/{mnist,fashion-mnist}/PROVENANCE.md record them.
_CHECKSUMS = {
    "mnist": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
    "fashion-mnist": (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ),
}
#: Where the official files are served (torchvision's mirror of MNIST first: yann.lecun.com often refuses).
_MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist", "http://yann.lecun.com/exdb/mnist"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",),
}
SOURCES = {
    name: DataSource(
        folder=name,
        files=tuple(
            SourceFile(file, digest, tuple(f"{mirror}/{file}" for mirror in _MIRRORS[name]))
            for file, digest in zip(IDX_FILES.values(), _CHECKSUMS[name])
        ),
        homepage=homepage,
    )
    for name, homepage in (
        ("mnist", "http://yann.lecun.com/exdb/mnist/"), ("fashion-mnist", "https://github.com/zalandoresearch/fashion-mnist"),
    )
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a gzipped IDX file (images ``[N, rows, cols]`` or labels ``[N]``, uint8)."""
    with gzip.open(path, "rb") as file:
        data = file.read()
    if len(data) < 4:
        raise ValueError(f"{path} is too short to be an IDX file.")
    zero, dtype_code, num_dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {data[:4].hex()}).")
    shape = struct.unpack(f">{num_dims}I", data[4 : 4 + 4 * num_dims])
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * num_dims)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {values.size} values, its header promises {shape}: truncated or corrupt.")
    return values.reshape(shape)


def place_items(
    images: np.ndarray, partners: np.ndarray, keep: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The two layers of each canvas, ``[N, 36, 36]`` uint8 each: image ``i`` at the top left, image
    ``partners[i]`` at the bottom right, zero elsewhere; only the canvases ``keep`` (indices ``i``), when given."""
    keep = np.arange(len(images)) if keep is None else keep
    offset = CANVAS_SIZE - ITEM_SIZE
    top_left = np.zeros((len(keep), CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8)
    bottom_right = np.zeros_like(top_left)
    top_left[:, :ITEM_SIZE, :ITEM_SIZE] = images[keep]
    bottom_right[:, offset:, offset:] = images[partners[keep]]
    return top_left, bottom_right


def draw_partners(num_images: int, rng: np.random.Generator) -> np.ndarray:
    """For each image, a random other image of the set: a shift of its index by 1 .. N-1."""
    return (np.arange(num_images) + rng.integers(1, num_images, size=num_images)) % num_images


def pair_items(
    images: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image paired with a random other image of the set: the two layers of each canvas
    (`place_items`) and the pair's labels ``[N, 2]`` (top left, bottom right)."""
    partners = draw_partners(len(images), rng)
    return (*place_items(images, partners), np.stack([labels, labels[partners]], axis=1))


def overlay_pairs(
    images: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Canvases ``[N, 36, 36]`` uint8 and labels ``[N, 2]``: image ``i`` at the top left, a random other
    image of the same set at the bottom right, combined by the pixel-wise maximum."""
    top_left, bottom_right, pair_labels = pair_items(images, labels, rng)
    return np.maximum(top_left, bottom_right), pair_labels


def pixel_labels(
    top_left: np.ndarray, bottom_right: np.ndarray, pair_labels: np.ndarray, ink_threshold: int = INK_THRESHOLD
) -> dict[str, np.ndarray]:
    """Per-pixel labels of canvases from their two layers (`place_items`), ``[N, 36, 36]`` uint8 each.

    A pixel belongs to the item that is brighter there (the one the canvas shows; the top-left one on a
    tie) when that brightness reaches ``ink_threshold``, and to the background otherwise.

    Returns:
        ``pixel_item``: 0 background, 1 the top-left item, 2 the bottom-right item;
        ``pixel_class``: the class of the item the pixel belongs to, or `BACKGROUND_CLASS` (10).
    """
    bottom_wins = bottom_right > top_left
    inked = np.maximum(top_left, bottom_right) >= ink_threshold
    item = np.where(inked, np.where(bottom_wins, 2, 1), 0).astype(np.uint8)
    classes = np.where(bottom_wins, pair_labels[:, 1, None, None], pair_labels[:, 0, None, None])
    return {"pixel_item": item, "pixel_class": np.where(inked, classes, BACKGROUND_CLASS).astype(np.uint8)}


def load_multi_mnist(
    data_dir: str | os.PathLike | None = None,
    dataset: str = "mnist",
    validation_size: int = 10_000,
    seed: int = 0,
    dense_labels: bool = False,
    splits: Sequence[str] = SPLITS,
    select_rows: Callable[[str, int], Sequence[int] | np.ndarray | None] | None = None,
) -> DatasetDict:
    """Build MultiMNIST (``dataset="mnist"``) or MultiFashion-MNIST (``dataset="fashion-mnist"``).

    Args:
        data_dir: A folder holding ``mnist/`` / ``fashion-mnist/`` with the four IDX .gz files (default:
            ../shared/data when present, or ``$MOEZOO_DATA_DIR``), or the data set's folder itself.
        dataset: ``"mnist"`` or ``"fashion-mnist"``.
        validation_size: Training images held out for the validation split.
        seed: Seed of the validation hold-out and of the pairing.
        dense_labels: Also give each canvas its per-pixel labels (`pixel_labels`), ``pixel_class`` and
            ``pixel_item`` (uint8 ``[36, 36]``), for dense tasks. The canvases are the same either way.
        splits: The splits to build, of ``train`` / ``validation`` / ``test``.
        select_rows: Given a split's name and size, the canvases of it to build (indices into the whole split, in
            the order given; ``None``: all), such as a run's subset (`moezoo.training.subset_indices`). A split's
            canvases are the same whichever splits and rows are built: only those asked for take memory (the
            60,000 canvases of all splits with their per-pixel labels take 3 GB).

    Returns:
        The ``splits`` with ``pixel_values`` (float32 ``[1, 36, 36]`` in [0, 1]) and ``labels`` (``[2]``: the
        classes of the top-left and the bottom-right item), in torch format.
    """
    if dataset not in SOURCES:
        raise ValueError(f"Unknown dataset {dataset!r}; choose one of {sorted(SOURCES)}.")
    unknown = [name for name in splits if name not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"Unknown split(s) {unknown}; choose from {list(SPLITS)}." if unknown else "Name a split to build.")
    folder = locate_dataset(SOURCES[dataset], data_dir)
    arrays = {name: read_idx(Path(folder) / file) for name, file in IDX_FILES.items()}
    num_train = len(arrays["train_images"])
    if not 0 < validation_size < num_train:
        raise ValueError(f"validation_size must be in (0, {num_train}), got {validation_size}.")

    rng = np.random.default_rng(seed)
    order = rng.permutation(num_train)
    parts = {
        "train": (arrays["train_images"][order[validation_size:]], arrays["train_labels"][order[validation_size:]]),
        "validation": (arrays["train_images"][order[:validation_size]], arrays["train_labels"][order[:validation_size]]),
        "test": (arrays["test_images"], arrays["test_labels"]),
    }
    built = {}
    for name, (images, labels) in parts.items():
        # Every split's partners are drawn, in order, so that each split's canvases never depend on which are built.
        partners = draw_partners(len(images), rng)
        if name not in splits:
            continue
        chosen = select_rows(name, len(images)) if select_rows is not None else None
        keep = np.arange(len(images)) if chosen is None else np.asarray(chosen, dtype=np.int64)
        if keep.size and (keep.min() < 0 or keep.max() >= len(images)):
            raise IndexError(f"rows of split {name!r} must lie in [0, {len(images)}).")
        top_left, bottom_right = place_items(images, partners, keep)
        pair_labels = np.stack([labels[keep], labels[partners[keep]]], axis=1)
        columns = {
            "pixel_values": np.maximum(top_left, bottom_right)[:, None].astype(np.float32) / 255.0,
            "labels": pair_labels.astype(np.int64),
        }
        if dense_labels:
            columns.update(pixel_labels(top_left, bottom_right, pair_labels))
        built[name] = Dataset.from_dict(columns)
    return DatasetDict(built).with_format("torch")
