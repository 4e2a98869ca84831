"""`DatasetSplits`, what every dataset loader returns, and the seeded validation hold-out
the loaders make when a dataset has no validation split of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class DatasetSplits:
    """Train, validation and (where the dataset has one) test data of one dataset.

    Validation is what checkpoints, EMA, early stopping and the tuner select on; it is
    never the test split. `test` is only for one evaluation at the end of a run.

    Attributes:
        train: unbatched `tf.data.Dataset` of `(image, label)`: uint8 images of shape
            (height, width, 3), sizes may vary; int32 scalar labels.
        val: the same for validation.
        class_names: label index -> class name.
        num_train: number of training examples.
        num_val: number of validation examples.
        source: the spec string the data came from, e.g. `"tfds:cifar10"`.
        val_split: where `val` comes from, e.g. `"validation"` or
            `"train (a seeded 20% hold-out, seed 0)"`.
        test: the held-out test split (TFDS `test`), or None.
        num_test: number of test examples (0 without `test`).
        test_split: the test split's name, or None.
        train_for_epoch: `epoch -> train` with the dataset's own file order keyed on the
            epoch (folder and TFDS datasets, which shuffle files before decoding), or None
            when `train` has no order of its own. `pipeline.training_stream` uses it, so a
            resumed run reads exactly what an uninterrupted one would have.
        skipped: files skipped as unreadable (folder datasets); empty otherwise.
        shuffle_buffer: the decoded-image shuffle buffer `make_pipeline` should use for
            `train`, or None for its default. Folder datasets reshuffle their file list
            every epoch before decoding, so a small buffer suffices and full-size decoded
            images do not pile up in memory (10,000 ImageNet-sized images are about 4 GB).
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    class_names: list[str]
    num_train: int
    num_val: int
    source: str
    skipped: list[str] = dataclasses.field(default_factory=list)
    shuffle_buffer: int | None = None
    val_split: str = "validation"
    test: tf.data.Dataset | None = None
    num_test: int = 0
    test_split: str | None = None
    train_for_epoch: Callable[[int], tf.data.Dataset] | None = None

    @property
    def num_classes(self):
        return len(self.class_names)


def stratified_split(labels, val_fraction, seed):
    """Seeded per-class split: `(train_indices, val_indices)`.

    Each class with at least two examples keeps at least one on each side. Train
    indices come shuffled so classes are mixed before any shuffle buffer sees them.
    """
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        indices = rng.permutation(np.flatnonzero(labels == label))
        num_val = round(len(indices) * val_fraction)
        num_val = min(max(num_val, 1), len(indices) - 1) if len(indices) > 1 else 0
        val.append(indices[:num_val])
        train.append(indices[num_val:])
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(val))


def hold_out_description(val_fraction, seed, of="train"):
    """Where a validation set held out of `of` comes from, for logs and metrics.json."""
    return f"{of} (a seeded {val_fraction * 100:g}% hold-out, seed {seed})"
