"""Datasets for training GoogLeNet: `load_dataset` turns a spec string into unbatched
train/validation `tf.data` datasets of `(uint8 image (H, W, 3), int32 label)`:

* `"digits"` (default): scikit-learn's bundled 8x8 digits, present on any machine.
* `"tfds:NAME"`: a TFDS image-classification dataset already prepared in `data_dir`
  (never touches the network unless `download=True`); see `tfds_data`.
* `"folder:PATH"`: one sub-folder of images per class, optionally under
  `PATH/train` and `PATH/val`; unreadable files are skipped and reported; see `folder_data`.

`pipeline.make_pipeline` batches one of those datasets for the model.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_googlenet.checks import fraction
from keras_googlenet_training.folder_data import load_folder
from keras_googlenet_training.pipeline import check_seed
from keras_googlenet_training.splits import DatasetSplits, hold_out_description, stratified_split
from keras_googlenet_training.tfds_data import load_tfds

SPEC_FORMS = ("digits", "tfds:NAME", "folder:PATH")
# Per-dataset defaults of the settings left as None. Small images need neither 224 px nor
# flips (a mirrored digit is another digit), and the paper's 8 % crops would cut most of a
# digit away; caching decoded images in memory only pays (and fits) for small datasets.
DATASET_DEFAULTS = {
    "digits": {"input_size": 80, "flip": False, "min_crop_area": 0.7, "cache": True},
}
GENERIC_DEFAULTS = {"input_size": 224, "flip": True, "min_crop_area": 0.08, "cache": False}


def dataset_defaults(spec):
    """`{"input_size", "flip", "min_crop_area", "cache"}` for a dataset spec string."""
    return dict(DATASET_DEFAULTS.get(spec, GENERIC_DEFAULTS))


def load_dataset(spec="digits", data_dir=None, seed=0, val_fraction=0.2, *, download=False):
    """Load a dataset's train and validation splits.

    Args:
        spec: `"digits"`, `"tfds:NAME"` (e.g. `"tfds:cifar10"`, `"tfds:imagenet2012"`)
            or `"folder:PATH"`.
        data_dir: TFDS data directory (`tfds:` only; `None` = TFDS's default).
        seed: seeds the train/validation split where one has to be made.
        val_fraction: share of each class held out for validation when the data has
            no validation split of its own; in (0, 1).
        download: `tfds:` only. By default nothing is downloaded, so loading never
            waits on a network that is not there; a dataset that is not prepared in
            `data_dir` raises `DatasetUnavailableError` saying how to prepare it.
            `True` lets TFDS download and prepare it (from the original sources).

    Returns:
        A `DatasetSplits`.

    Raises:
        ValueError: a bad argument, a missing or unusable folder, an unknown or
            non-image-classification TFDS dataset.
        DatasetUnavailableError: (a `ValueError`) a TFDS dataset that is not prepared.
    """
    if not isinstance(spec, str):
        raise ValueError(
            f"`dataset` must be a string of the form {' | '.join(SPEC_FORMS)}; received {spec!r}."
        )
    seed = check_seed(seed)
    val_fraction = fraction("val_fraction", val_fraction, include_one=False)

    kind, _, arg = spec.partition(":")
    if spec == "digits":
        return _load_digits(seed, val_fraction)
    if kind == "tfds" and arg:
        return load_tfds(spec, arg, data_dir, seed, val_fraction, download)
    if kind == "folder" and arg:
        return load_folder(spec, arg, seed, val_fraction)
    raise ValueError(
        f"`dataset` must be one of the forms {', '.join(SPEC_FORMS)}; received {spec!r}."
    )


def _load_digits(seed, val_fraction):
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 gray levels -> 0..255, replicated to RGB.
    gray = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(gray[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int32)
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    return DatasetSplits(
        train=tf.data.Dataset.from_tensor_slices((images[train_idx], labels[train_idx])),
        val=tf.data.Dataset.from_tensor_slices((images[val_idx], labels[val_idx])),
        class_names=[str(name) for name in digits.target_names],
        num_train=len(train_idx),
        num_val=len(val_idx),
        source="digits",
        skipped=[],
        val_split=hold_out_description(val_fraction, seed, of="digits, per class"),
    )
