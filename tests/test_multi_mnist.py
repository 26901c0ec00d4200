import gzip

import numpy as np
import pytest
import torch

from moezoo.data import BACKGROUND_CLASS, load_multi_mnist, overlay_pairs, pixel_labels, read_idx


@pytest.fixture(scope="module")
def fashion(data_dir):
    return load_multi_mnist(data_dir, dataset="fashion-mnist", seed=0)


def test_splits_shapes_and_label_ranges(fashion):
    assert {name: len(split) for name, split in fashion.items()} == {"train": 50_000, "validation": 10_000, "test": 10_000}
    batch = fashion["test"][:64]
    assert batch["pixel_values"].shape == (64, 1, 36, 36) and batch["pixel_values"].dtype == torch.float32
    assert batch["pixel_values"].min() >= 0 and batch["pixel_values"].max() <= 1
    labels = fashion["train"].select_columns("labels")[:]["labels"]  # not every canvas through the torch formatter
    assert labels.shape == (50_000, 2) and labels.min() == 0 and labels.max() == 9


def test_test_canvases_are_the_documented_overlay(fashion, data_dir):
    images = read_idx(data_dir / "fashion-mnist" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(data_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz")
    test = fashion["test"][:200]
    canvases = (test["pixel_values"][:, 0] * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(test["labels"][:, 0].numpy(), labels[:200])  # item i sits at the top left
    # Outside the overlap the top-left item is untouched, and the bottom-right corner is its partner's.
    assert np.array_equal(canvases[:, :8, :28], images[:200, :8, :])
    corner_owners = {}
    for j, image in enumerate(images):
        corner_owners.setdefault(image[20:, 20:].tobytes(), []).append(j)
    for i in range(200):
        partners = corner_owners[canvases[i, 28:, 28:].tobytes()]  # the bottom-right item's own corner
        assert any(labels[j] == test["labels"][i, 1].item() for j in partners)
        overlap = np.maximum(images[i, 8:, 8:], canvases[i, 28 - 20 : 28, 28 - 20 : 28]) == canvases[i, 8:28, 8:28]
        assert overlap.all()


def test_overlay_is_deterministic_and_never_pairs_an_image_with_itself():
    images = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = np.arange(50) % 10
    first = overlay_pairs(images, labels, np.random.default_rng(7))
    second = overlay_pairs(images, labels, np.random.default_rng(7))
    other = overlay_pairs(images, labels, np.random.default_rng(8))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])
    canvases = first[0]
    assert np.array_equal(canvases[:, :28, :8], images[:, :, :8])
    partners_bottom_right = canvases[:, 28:, 28:]
    assert not any(np.array_equal(partners_bottom_right[i], images[i, 20:, 20:]) for i in range(50))


def test_missing_and_corrupt_files_are_named(tmp_path, data_dir):
    with pytest.raises(FileNotFoundError, match="mnist"):
        load_multi_mnist(tmp_path)
    with pytest.raises(ValueError, match="Unknown dataset 'kmnist'"):
        load_multi_mnist(data_dir, dataset="kmnist")
    truncated = tmp_path / "labels.gz"
    with gzip.open(truncated, "wb") as file:
        file.write(bytes([0, 0, 8, 1, 0, 0, 0, 10, 1, 2, 3]))  # promises 10 labels, holds 3
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(truncated)


def test_pixel_labels_name_the_item_under_each_pixel():
    top_left = np.zeros((1, 36, 36), dtype=np.uint8)
    bottom_right = np.zeros_like(top_left)
    top_left[0, 10, 10], bottom_right[0, 10, 10] = 200, 150  # both inked: the brighter, top-left, wins
    top_left[0, 11, 11], bottom_right[0, 11, 11] = 100, 140  # the bottom-right is brighter and inked
    top_left[0, 12, 12] = 127  # below the ink threshold: background
    bottom_right[0, 30, 30] = 128
    labels = pixel_labels(top_left, bottom_right, np.array([[3, 7]]))
    item, classes = labels["pixel_item"][0], labels["pixel_class"][0]
    assert (item[10, 10], item[11, 11], item[12, 12], item[30, 30], item[0, 35]) == (1, 2, 0, 2, 0)
    assert (classes[10, 10], classes[11, 11], classes[12, 12], classes[30, 30]) == (3, 7, BACKGROUND_CLASS, 7)


def test_dense_labels_come_from_the_same_canvases(data_dir, fashion):
    dense = load_multi_mnist(data_dir, dataset="fashion-mnist", seed=0, dense_labels=True)["test"][:300]
    plain = fashion["test"][:300]
    assert torch.equal(dense["pixel_values"], plain["pixel_values"]) and torch.equal(dense["labels"], plain["labels"])
    canvases = (dense["pixel_values"][:, 0] * 255).round()
    item, classes = dense["pixel_item"].long(), dense["pixel_class"].long()
    assert item.shape == classes.shape == (300, 36, 36)
    assert torch.equal(item == 0, canvases < 128) and torch.equal(classes == BACKGROUND_CLASS, item == 0)
    # Outside the overlap each item owns its corner: the class there is that item's label.
    top_left_corner, bottom_right_corner = item[:, :8, :8], item[:, 28:, 28:]
    assert set(top_left_corner.unique().tolist()) <= {0, 1} and set(bottom_right_corner.unique().tolist()) <= {0, 2}
    for position, corner in ((0, (slice(0, 8), slice(0, 8))), (1, (slice(28, 36), slice(28, 36)))):
        region, owners = classes[:, corner[0], corner[1]], item[:, corner[0], corner[1]] > 0
        expected = dense["labels"][:, position].view(-1, 1, 1).expand_as(region)
        assert torch.equal(region[owners], expected[owners])
