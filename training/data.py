"""Datasets and input pipelines for training GoogLeNet.

`load_dataset` turns a spec string into unbatched train/validation `tf.data`
datasets of `(uint8 image (H, W, 3), int32 label)`:

* `"digits"` (default): scikit-learn's bundled 8x8 digits, present on any machine.
* `"tfds:NAME"`: a TFDS image-classification dataset already prepared in `data_dir`
  (never touches the network unless `download=True`).
* `"folder:PATH"`: one sub-folder of images per class, optionally under
  `PATH/train` and `PATH/val`; unreadable files are skipped and reported.

`make_pipeline` (from `pipeline`, re-exported here) batches one of those datasets for
the model; `image_files` checks and decodes the files of folder datasets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import numbers
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_googlenet.input_files import ImageTooLargeError
from keras_googlenet_training.augment import central_crop, inception_crop, inception_crop_box
from keras_googlenet_training.image_files import decoding_dataset, scan_images
from keras_googlenet_training.pipeline import check_seed, make_pipeline

__all__ = [
    "DatasetSplits",
    "DatasetUnavailableError",
    "central_crop",
    "inception_crop",
    "inception_crop_box",
    "load_dataset",
    "make_pipeline",
]

logger = logging.getLogger("keras_googlenet.data")

SPEC_FORMS = ("digits", "tfds:NAME", "folder:PATH")
_VAL_FOLDER_NAMES = ("val", "validation")
# Per-dataset defaults of the settings left as None. Small images need neither 224 px nor
# flips (a mirrored digit is another digit), and the paper's 8 % crops would cut most of a
# digit away; caching decoded images in memory only pays (and fits) for small datasets.
DATASET_DEFAULTS = {
    "digits": {"input_size": 80, "flip": False, "min_crop_area": 0.7, "cache": True},
}
GENERIC_DEFAULTS = {"input_size": 224, "flip": True, "min_crop_area": 0.08, "cache": False}


class DatasetUnavailableError(ValueError):
    """A dataset is not available locally and could not (or may not) be downloaded."""


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


def dataset_defaults(spec):
    """`{"input_size", "flip", "min_crop_area", "cache"}` for a dataset spec string."""
    return dict(DATASET_DEFAULTS.get(spec, GENERIC_DEFAULTS))


# ---------------------------------------------------------------------------------
# load_dataset


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
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
        raise ValueError(f"`val_fraction` must be a number in (0, 1); received {val_fraction!r}.")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"`val_fraction` must be in (0, 1); received val_fraction={val_fraction}.")

    kind, _, arg = spec.partition(":")
    if spec == "digits":
        return _load_digits(seed, float(val_fraction))
    if kind == "tfds" and arg:
        return _load_tfds(spec, arg, data_dir, seed, float(val_fraction), download)
    if kind == "folder" and arg:
        return _load_folder(spec, arg, seed, float(val_fraction))
    raise ValueError(
        f"`dataset` must be one of the forms {', '.join(SPEC_FORMS)}; received {spec!r}."
    )


def _stratified_split(labels, val_fraction, seed):
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


def _load_digits(seed, val_fraction):
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 gray levels -> 0..255, replicated to RGB.
    gray = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(gray[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int32)
    train_idx, val_idx = _stratified_split(labels, val_fraction, seed)
    return DatasetSplits(
        train=tf.data.Dataset.from_tensor_slices((images[train_idx], labels[train_idx])),
        val=tf.data.Dataset.from_tensor_slices((images[val_idx], labels[val_idx])),
        class_names=[str(name) for name in digits.target_names],
        num_train=len(train_idx),
        num_val=len(val_idx),
        source="digits",
        skipped=[],
        val_split=_hold_out_description(val_fraction, seed, of="digits, per class"),
    )


# ---------------------------------------------------------------------------------
# TFDS


@contextlib.contextmanager
def _tfds_offline():
    """Keep TFDS off gs://tfds-data: offline, each metadata look-up there hangs ~60 s.

    TFDS 4.9.10 gates every GCS access (dataset info, `is_dataset_on_gcs`, prepared
    downloads) on `gcs_utils._is_gcs_disabled`; it defaults to True, but make sure.
    """
    from tensorflow_datasets.core.utils import gcs_utils

    if not hasattr(gcs_utils, "_is_gcs_disabled"):  # another TFDS version: rely on try_gcs
        yield
        return
    previous = gcs_utils._is_gcs_disabled
    gcs_utils._is_gcs_disabled = True
    try:
        yield
    finally:
        gcs_utils._is_gcs_disabled = previous


def _load_tfds(spec, name, data_dir, seed, val_fraction, download):
    import tensorflow_datasets as tfds

    with _tfds_offline():
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
            val_split = _hold_out_description(val_fraction, seed)
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


def _hold_out_description(val_fraction, seed, of="train"):
    """Where a validation set held out of `of` comes from, for logs and metrics.json."""
    return f"{of} (a seeded {val_fraction * 100:g}% hold-out, seed {seed})"


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


# ---------------------------------------------------------------------------------
# Image folders


# Decoded-image shuffle buffer for folder datasets, whose file order is already shuffled.
FOLDER_SHUFFLE_BUFFER = 256


def _load_folder(spec, path, seed, val_fraction):
    root = os.path.expanduser(path)
    if not os.path.isdir(root):
        raise ValueError(f"`dataset`: folder {path!r} does not exist or is not a directory.")
    val_root = next(
        (os.path.join(root, n) for n in _VAL_FOLDER_NAMES if os.path.isdir(os.path.join(root, n))),
        None,
    )
    has_subtrees = os.path.isdir(os.path.join(root, "train")) and val_root is not None
    train_root = os.path.join(root, "train") if has_subtrees else root

    class_names = _class_folders(train_root)
    if len(class_names) < 2:
        raise ValueError(
            f"`dataset`: {spec!r} needs one sub-folder of images per class and at least two "
            f"classes; found {len(class_names)} in {train_root} ({class_names})."
        )
    if has_subtrees:
        extra = sorted(set(_class_folders(val_root)) - set(class_names))
        if extra:
            raise ValueError(
                f"`dataset`: {val_root} has classes that {train_root} lacks: {extra}. "
                "Train and val must use the same class sub-folders."
            )

    # The dataset's own folders are never walked into again through a link.
    seen = _real_dirs([root, train_root, val_root] + [
        os.path.join(tree, name) for tree in (train_root, val_root) if tree
        for name in class_names])
    train_files, train_labels, duplicates = _list_files(train_root, class_names, seen)
    val_files, val_labels, val_duplicates = (
        _list_files(val_root, class_names, seen) if has_subtrees else ([], [], []))
    duplicates += val_duplicates
    if duplicates:
        logger.warning(
            "Counted once: %d paths in %s lead to a file already listed (symlinks or hard "
            "links), e.g. %s", len(duplicates), root, duplicates[:5])
    try:
        readable, use_pil = scan_images(train_files + val_files)
    except ImageTooLargeError as error:
        raise ImageTooLargeError(
            f"`dataset`: {str(error).rstrip('.')} or move it out of {root}.") from None
    skipped = [f for f, ok in zip(train_files + val_files, readable, strict=True) if not ok]
    if skipped:
        logger.warning(
            "Skipped %d of %d files in %s that are not readable images (corrupt, truncated "
            "or not images), e.g. %s",
            len(skipped),
            len(readable),
            root,
            skipped[:5],
        )

    def keep(files, labels, offset):
        mask = readable[offset : offset + len(files)]
        return (
            np.array(files, dtype=object)[mask].astype(str),
            np.array(labels, dtype=np.int32)[mask],
            use_pil[offset : offset + len(files)][mask],
        )

    files, labels, pil = keep(train_files, train_labels, 0)
    empty = [class_names[c] for c in range(len(class_names)) if not np.any(labels == c)]
    if empty:
        raise ValueError(f"`dataset`: classes without a readable image in {train_root}: {empty}.")
    if has_subtrees:
        val_files, val_labels, val_pil = keep(val_files, val_labels, len(train_files))
        order = np.random.default_rng(seed).permutation(len(files))  # mix the classes
        files, labels, pil = files[order], labels[order], pil[order]
    else:
        train_idx, val_idx = _stratified_split(labels, val_fraction, seed)
        val_files, val_labels, val_pil = files[val_idx], labels[val_idx], pil[val_idx]
        files, labels, pil = files[train_idx], labels[train_idx], pil[train_idx]
    if len(val_files) == 0:
        raise ValueError(
            f"`dataset`: {spec!r} leaves no validation images; add images or a val/ folder."
        )

    return DatasetSplits(
        train=decoding_dataset(files, labels, pil, shuffle_seed=seed),
        train_for_epoch=lambda epoch: decoding_dataset(files, labels, pil, shuffle_seed=seed,
                                                       epoch=epoch),
        val=decoding_dataset(val_files, val_labels, val_pil),
        class_names=class_names,
        num_train=len(files),
        num_val=len(val_files),
        source=spec,
        skipped=skipped,
        shuffle_buffer=FOLDER_SHUFFLE_BUFFER,
        val_split=(f"{os.path.basename(val_root)}/ folder" if has_subtrees
                   else _hold_out_description(val_fraction, seed, of="folder, per class")),
    )


def _class_folders(root):
    """The class sub-folders of `root`, sorted; their names become the labels as they are."""
    names = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    for name in names:
        if not _is_utf8(name) or "\n" in name or "\r" in name:
            # labels.txt, the model card and TFLite metadata hold one UTF-8 name a line
            raise ValueError(
                f"`dataset`: class folder {os.fsencode(name)!r} in {root} is not a UTF-8 "
                "name on one line; rename it (its name becomes the class label).")
    return names


def _is_utf8(name):
    try:
        name.encode("utf-8")  # undecodable bytes arrive as lone surrogates
        return True
    except UnicodeEncodeError:
        return False


def _list_files(root, class_names, seen):
    """Image paths and labels under `root/<class>/`, each real file once.

    Directory symlinks are followed (a class folder may live elsewhere), but each real
    directory is walked once, so a link back up (`class/loop -> ..`) is no loop; a file
    reachable by several paths (symlinks, hard links) is listed at its first path only.
    `seen` (real directories and files; it starts with the dataset's own folders, which a
    link never re-enters) is shared by the train and val trees, so no file is in both.
    Returns `(files, labels, duplicates)`: `duplicates` are the paths dropped.
    """
    files, labels, duplicates = [], [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(root, name)
        if not os.path.isdir(class_dir):
            continue  # a val/ tree may lack some classes
        pending = [class_dir]
        while pending:  # depth-first, in sorted order: the order os.walk gave before
            directory = pending.pop()
            if directory != class_dir and not _first_visit(directory, seen):
                continue
            subdirs, entries = [], []
            try:
                with os.scandir(directory) as scan:
                    entries = sorted(scan, key=lambda entry: entry.name)
            except OSError as error:
                logger.warning("Skipped folder %s: %s", directory, error)
            for entry in entries:
                if entry.name.startswith("."):  # .DS_Store and friends
                    continue
                if _is_dir(entry):
                    subdirs.append(entry.path)
                elif _first_visit(entry.path, seen):
                    files.append(entry.path)
                    labels.append(label)
                else:
                    duplicates.append(entry.path)
            pending.extend(reversed(subdirs))
    return files, labels, duplicates


def _real_dirs(paths):
    """The `(device, inode)` keys of the existing directories among `paths`."""
    keys = set()
    for path in paths:
        if path and os.path.isdir(path):
            info = os.stat(path)
            keys.add((info.st_dev, info.st_ino))
    return keys


def _is_dir(entry):
    try:
        return entry.is_dir()  # follows a symlink
    except OSError:
        return False


def _first_visit(path, seen):
    """Whether the real file or directory at `path` is seen for the first time (and mark
    it). A path that cannot be resolved (a broken link) counts as new: the image check
    then reports it as unreadable."""
    try:
        info = os.stat(path)
        key = (info.st_dev, info.st_ino)
    except OSError:
        key = ("unresolved", os.path.abspath(path))
    if key in seen:
        return False
    seen.add(key)
    return True
