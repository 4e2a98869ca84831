"""`tfds:NAME` datasets: a TFDS image-classification dataset already prepared in `data_dir`,
read without touching the network unless `download=True`."""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from keras_googlenet import _compat
from keras_googlenet_training.splits import DatasetSplits, hold_out_description

logger = logging.getLogger("keras_googlenet.data")


class DatasetUnavailableError(ValueError):
    """A dataset is not available locally and could not (or may not) be downloaded."""


def load_tfds(spec, name, data_dir, seed, val_fraction, download):
    """`load_dataset` for `tfds:NAME`: a `DatasetSplits` of a prepared TFDS dataset."""
    import tensorflow_datasets as tfds

    with _compat.tfds_gcs_disabled():  # offline, each metadata look-up hangs ~60 s
        builder, image_feature, label_feature = _prepared_builder(
            tfds, spec, name, data_dir, download)
        split_names = list(builder.info.splits.keys())
        if "train" not in split_names:
            raise ValueError(
                f"`dataset`: TFDS dataset {name!r} has no `train` split (splits: {split_names})."
            )
        to_pair = _tfds_to_pair(image_feature, spec)
        train_for_epoch = None
        if "validation" in split_names:
            train_for_epoch = _tfds_train_for_epoch(builder, to_pair, seed)
            train = builder.as_dataset(
                split="train",
                shuffle_files=True,
                read_config=tfds.ReadConfig(shuffle_seed=seed),
            )
            val = builder.as_dataset(split="validation", shuffle_files=False)
            num_train = _count(train, builder, "train")
            num_val = _count(val, builder, "validation")
            val_split = "validation"
        else:
            # Never the test split: validation is what checkpoints and the tuner select on.
            train, val, num_train, num_val = _hold_out(
                builder, image_feature, val_fraction, seed, spec)
            val_split = hold_out_description(val_fraction, seed)
        test = test_split = None
        num_test = 0
        if "test" in split_names and _has_labels(builder, "test"):
            test_split = "test"
            test = builder.as_dataset(split="test", shuffle_files=False).map(
                to_pair, num_parallel_calls=tf.data.AUTOTUNE)
            num_test = _count(test, builder, "test")

    return DatasetSplits(
        train=train.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE),
        val=val.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE),
        class_names=list(label_feature.names),
        num_train=int(num_train),
        num_val=int(num_val),
        source=spec,
        skipped=[],
        val_split=val_split,
        test=test,
        num_test=int(num_test),
        test_split=test_split,
        train_for_epoch=train_for_epoch,
    )



def _prepared_builder(tfds, spec, name, data_dir, download):
    """The dataset's builder, prepared (downloading only with `download`), and its image
    and label features; a `ValueError` naming `dataset` for any other kind of dataset."""
    _check_tfds_version(tfds, name, spec)
    try:
        builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"`dataset`: TFDS has no dataset {name!r} (received {spec!r}); "
            "see `tfds.list_builders()` for the names."
        ) from None
    features = builder.info.features
    image_feature = features["image"] if "image" in features else None
    label_feature = features["label"] if "label" in features else None
    if not isinstance(image_feature, tfds.features.Image) or not isinstance(
        label_feature, tfds.features.ClassLabel
    ):
        raise ValueError(
            f"`dataset`: {spec!r} is not an image-classification dataset; it needs an "
            f"`image` (Image) and a `label` (ClassLabel) feature, it has {list(features)}."
        )
    if not builder.is_prepared():
        if not download:
            raise DatasetUnavailableError(_not_prepared_message(builder, name, data_dir))
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False)
            )
        except Exception as error:  # any failure means: not available here
            raise DatasetUnavailableError(
                f"Could not download and prepare TFDS dataset {name!r}: {error}\n"
                + _not_prepared_message(builder, name, data_dir, download_failed=True)
            ) from error
    return builder, image_feature, label_feature


def _tfds_train_for_epoch(builder, to_pair, seed):
    """`epoch -> train` whose file order (TFDS shuffles its files, not its examples) is a
    function of `(seed, epoch)` alone, not of how many passes this process made."""
    import tensorflow_datasets as tfds

    def train_for_epoch(epoch):
        files_seed = int(np.random.default_rng([seed, epoch]).integers(2**31))
        return builder.as_dataset(
            split="train", shuffle_files=True,
            read_config=tfds.ReadConfig(shuffle_seed=files_seed,
                                        shuffle_reshuffle_each_iteration=False),
        ).map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)

    return train_for_epoch


def _has_labels(builder, split):
    """Whether `split` is labelled: some test splits (ImageNet's) hold label -1 throughout."""
    import tensorflow_datasets as tfds

    first = builder.as_dataset(split=split, shuffle_files=False,
                               decoders={"image": tfds.decode.SkipDecoding()}).take(1)
    labels = [int(example["label"]) for example in first]
    if labels and labels[0] < 0:
        logger.info("%s: the %r split is unlabelled; no test evaluation", builder.name, split)
        return False
    return True


def _hold_out(builder, image_feature, val_fraction, seed, spec):
    """A seeded random `val_fraction` of TFDS `train` as validation, by example index.

    Images are decoded after the split, so each pass decodes only the examples it keeps.
    Returns `(train, val, num_train, num_val)` (examples with the image decoded).
    """
    import tensorflow_datasets as tfds

    full = builder.as_dataset(split="train", shuffle_files=False,
                              decoders={"image": tfds.decode.SkipDecoding()})
    total = _count(full, builder, "train")
    if total < 2:
        raise ValueError(f"`dataset`: {spec!r} has {total} training example(s); holding out "
                         "a validation set needs at least two.")
    num_val = min(max(round(total * val_fraction), 1), total - 1)
    is_val = np.zeros(total, dtype=bool)
    is_val[np.random.default_rng(seed).permutation(total)[:num_val]] = True
    is_val = tf.constant(is_val)

    def decode(_, example):
        return {**example, "image": image_feature.decode_example(example["image"])}

    indexed = full.enumerate()
    train = indexed.filter(lambda i, _: tf.logical_not(is_val[i])).map(decode)
    val = indexed.filter(lambda i, _: is_val[i]).map(decode)
    return train, val, total - num_val, num_val


def _check_tfds_version(tfds, name, spec):
    """`NAME:VERSION` (or `NAME/CONFIG:VERSION`) names a version the builder has.

    Checked against the versions the installed TFDS registers for the dataset, offline;
    an unknown base name is left to `tfds.builder`, which names it.
    """
    base, _, version = name.partition(":")
    base = base.split("/")[0]
    try:
        builder_cls = tfds.builder_cls(base)
    except Exception:  # not a registered name (or a namespace): tfds.builder says which
        return
    if not version:
        return
    versions = [str(v) for v in (builder_cls.VERSION, *builder_cls.SUPPORTED_VERSIONS)]
    try:
        matched = any(tfds.core.Version(v).match(version) for v in versions)
    except ValueError:  # not x.y.z (digits or *)
        raise ValueError(
            f"`dataset`: {version!r} in {spec!r} is not a TFDS version (MAJOR.MINOR.PATCH, "
            f"e.g. {versions[0]}); versions of {base!r}: {', '.join(versions)}.") from None
    if not matched:
        raise ValueError(
            f"`dataset`: TFDS dataset {base!r} has no version {version!r} (received "
            f"{spec!r}); versions available: {', '.join(versions)} (tfds:{base} is "
            f"{versions[0]}).")


def _count(dataset, builder, split):
    cardinality = int(dataset.cardinality())
    return cardinality if cardinality >= 0 else builder.info.splits[split].num_examples


def _tfds_to_pair(image_feature, spec):
    channels = image_feature.shape[-1]
    if channels not in (1, 3, 4, None):
        raise ValueError(f"`dataset`: {spec!r} has {channels}-channel images; 1, 3 or 4 work.")

    def to_rgb(image):
        if channels == 1:
            return tf.image.grayscale_to_rgb(image)
        if channels == 4:
            return image[..., :3]  # drop alpha
        if channels == 3:
            return image
        # Channels only known per image: gray is replicated, alpha dropped.
        image = tf.cond(
            tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image[..., :3]
        )
        image.set_shape((None, None, 3))
        return image

    def to_pair(example):
        image = example["image"]
        if image.dtype != tf.uint8:
            image = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
        return to_rgb(image), tf.cast(example["label"], tf.int32)

    return to_pair


def _not_prepared_message(builder, name, data_dir, download_failed=False):
    where = data_dir if data_dir is not None else "the TFDS default data_dir"
    shown_dir = data_dir if data_dir is not None else "~/tensorflow_datasets"
    message = (
        f"TFDS dataset {name!r} is not prepared in {where} (looked for {builder.data_dir}). "
        f"Prepare it on a machine with network access: `tfds build {name} --data_dir "
        f"{shown_dir}`, and copy that directory here"
    )
    if not download_failed:
        # The default never downloads, so loading cannot hang on a missing network.
        message += (
            "; or let TFDS download it now: `googlenet-train --download` (download=True)"
        )
    message += "."
    instructions = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if instructions:
        manual_dir = os.path.join(shown_dir, "downloads", "manual")
        message += (
            f"\n{name!r} must be downloaded by hand first:\n{instructions.strip()}\n"
            f"Put those files in {manual_dir} and run "
            f"`tfds build {name} --data_dir {shown_dir} --manual_dir {manual_dir}`."
        )
    return message
