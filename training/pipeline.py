"""Input pipelines for GoogLeNet: batches of augmented (training) or centrally cropped
(evaluation) images, preprocessed for the model.

`make_pipeline` is deterministic under its `seed`: every random op is stateless and fed
per-element seeds drawn from a seeded stream that is redrawn, reproducibly, at every
iteration. `training_stream` is what the trainer feeds `fit`: epoch after epoch of
batches whose order and augmentation are a function of `(seed, epoch)` alone, so a
resumed run sees exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np
import tensorflow as tf

import keras_googlenet
from keras_googlenet.checks import fail, one_of, positive_int
from keras_googlenet_training.augment import (
    AREA_RANGE,
    central_crop,
    check_area_range,
    train_augment,
)
from keras_googlenet_training.splits import DatasetSplits


def make_pipeline(
    dataset,
    *,
    input_size,
    batch_size,
    training,
    seed=0,
    variant="v1",
    flip=True,
    distort=True,
    cache=False,
    shuffle_buffer=10_000,
    drop_remainder=None,
    area_range=AREA_RANGE,
    epoch=None,
):
    """Batch a `DatasetSplits.train`/`.val` dataset for a GoogLeNet model.

    Training: shuffle (reshuffled every iteration), Inception crop of 8 %-100 % of
    the area (`area_range`) with aspect ratio in [3/4, 4/3], resize to `input_size`, optional
    horizontal flip and color distortions. Evaluation: central crop of 87.5 % of
    each side, resize. Then `keras_googlenet.preprocess_input(variant=variant)`.
    The dataset is not repeated: one iteration is one epoch.

    Deterministic under `seed`: pipelines built with the same seed yield identical
    batches, epoch after epoch; each new iteration (epoch, or pass of a `.repeat()`)
    draws a new shuffle and new augmentation, reproducibly. (TF combines op seeds
    with its global seed, so a `keras.utils.set_random_seed` call is part of the
    recipe: same global seed and same `seed`, same batches.)

    Args:
        dataset: unbatched `tf.data.Dataset` of `(uint8 image (H, W, 3), label)`.
        input_size: side length of the model input, e.g. 224.
        batch_size: examples per batch.
        training: augment and shuffle (True) or evaluate (False).
        seed: seeds the shuffle and the augmentation.
        variant: GoogLeNet variant whose preprocessing to apply.
        flip: random horizontal flips (training; turn off for e.g. digits).
        distort: random brightness, saturation, hue and contrast (training).
        cache: cache the decoded, un-augmented images in memory after the first epoch.
        shuffle_buffer: shuffle buffer size in examples (training).
        drop_remainder: drop the last partial batch; `None` = True for training
            (static batch shapes for tf.distribute), False for evaluation.
        area_range: bounds of the training crop's share of the image area; the
            paper's (0.08, 1.0) by default (tiny images like digits may want more).
        epoch: training only. None: every iteration draws a new shuffle and new
            augmentation (above). An int: the order and the augmentation are a function
            of `(seed, epoch)`, the same at every iteration and in every process.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32 (batch, input_size,
        input_size, 3) in [-1, 1] and int32 (batch,).
    """
    input_size, batch_size, shuffle_buffer, seed, area_range, drop_remainder = _checked(
        dataset, input_size=input_size, batch_size=batch_size, training=training, seed=seed,
        variant=variant, flip=flip, distort=distort, cache=cache,
        shuffle_buffer=shuffle_buffer, drop_remainder=drop_remainder, area_range=area_range,
        epoch=epoch)

    ds = dataset.cache() if cache else dataset
    if training:
        augment = _augmenter(input_size, flip, distort, tuple(area_range), variant)
        ds = _shuffled_and_augmented(ds, shuffle_buffer, seed, epoch, augment)
    else:

        def evaluate(image, label):
            return _finish(central_crop(image, input_size), label, variant)

        ds = ds.map(evaluate, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    ds = ds.batch(batch_size, drop_remainder=bool(drop_remainder))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def _checked(dataset, *, input_size, batch_size, training, seed, variant, flip, distort, cache,
             shuffle_buffer, drop_remainder, area_range, epoch):
    """`make_pipeline`'s arguments checked: `(input_size, batch_size, shuffle_buffer, seed,
    area_range, drop_remainder)`, resolved; a `ValueError` naming the first bad one."""
    _check_dataset(dataset)
    input_size = positive_int("input_size", input_size)
    batch_size = positive_int("batch_size", batch_size)
    shuffle_buffer = positive_int("shuffle_buffer", shuffle_buffer)
    seed = check_seed(seed)
    area_range = check_area_range(area_range)
    one_of("variant", variant, sorted(keras_googlenet.VARIANTS))
    drop_remainder = _check_flags(training=training, flip=flip, distort=distort, cache=cache,
                                  drop_remainder=drop_remainder)
    if epoch is not None:
        if not training:
            raise ValueError("`epoch` keys the training shuffle; pass it with training=True.")
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"`epoch` must be an int >= 0; received epoch={epoch!r}.")
    cardinality = int(dataset.cardinality())
    if drop_remainder and 0 <= cardinality < batch_size:
        raise ValueError(
            f"`batch_size`={batch_size} exceeds the dataset's {cardinality} examples, so "
            "with drop_remainder=True there would be no batch; lower `batch_size`."
        )

    return input_size, batch_size, shuffle_buffer, seed, area_range, drop_remainder


def _finish(image, label, variant):
    return keras_googlenet.preprocess_input(image, variant=variant), tf.cast(label, tf.int32)


@functools.lru_cache(maxsize=8)
def _augmenter(input_size, flip, distort, area_range, variant):
    """The augmentation, traced once per settings: `training_stream` maps it in a pipeline
    per epoch, and tracing it anew for each of them would cost seconds an epoch."""

    @tf.function
    def augment(example, element_seed):
        image, label = example
        image = train_augment(image, input_size, element_seed, flip=flip, distort=distort,
                              area_range=area_range)
        return _finish(image, label, variant)

    return augment


def epoch_seed(seed, epoch):
    """The seed of one epoch's shuffle and augmentation: distinct for every (seed, epoch)."""
    return (int(seed) * 1_000_003 + int(epoch) + 1) % 2**31


def _shuffled_and_augmented(ds, shuffle_buffer, seed, epoch, augment):
    if epoch is None:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        # A seeded stream of per-element seed pairs for the stateless augmentation ops;
        # `rerandomize_each_iteration` draws a fresh (but reproducible) stream per epoch.
        element_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, element_seeds.batch(2, drop_remainder=True))
    else:
        # Keyed on the epoch, not on how many iterations this process has made: the
        # shuffle is the same at every iteration, each element's seed is (epoch, index).
        key = epoch_seed(seed, epoch)
        ds = ds.shuffle(shuffle_buffer, seed=key, reshuffle_each_iteration=False).enumerate()
        ds = ds.map(lambda index, example: (example, tf.stack([tf.constant(key, tf.int64),
                                                               index])))
    return ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def epoch_steps(num_train, batch_size, replicas, cap=None):
    """`(global_batch, steps_per_epoch)` for `batch_size` examples per replica: one pass
    over the `num_train` training examples, at most `cap` steps; a `ValueError` naming
    `batch_size` when the global batch exceeds the examples."""
    global_batch = batch_size * replicas
    steps = num_train // global_batch
    if steps < 1:
        raise ValueError(
            f"`batch_size`: the global batch {global_batch} ({batch_size} per replica x "
            f"{replicas} replica(s)) exceeds the {num_train} training images."
        )
    return global_batch, (min(steps, cap) if cap else steps)


def training_stream(dataset, *, first_epoch, end_epoch, steps_per_epoch, **pipeline_args):
    """The batches of epochs `first_epoch` .. `end_epoch - 1`, `steps_per_epoch` each, for
    `fit(steps_per_epoch=...)`: epoch e is `make_pipeline(..., training=True, epoch=e)`,
    so a run resumed at epoch e sees exactly what an uninterrupted one would have.

    `dataset` is the training split, or `epoch -> split` where the split has a file order
    of its own (`DatasetSplits.train_for_epoch`: folder and TFDS datasets), so that order
    is keyed on the epoch too.

    An epoch that comes up short (files that turned unreadable are dropped) repeats its
    own batches rather than end training early.
    """
    steps_per_epoch = positive_int("steps_per_epoch", steps_per_epoch)
    for_epoch = dataset if callable(dataset) else (lambda _epoch: dataset)
    if pipeline_args.get("cache"):
        # Cache once, before the per-epoch pipelines, so every epoch reads the same cache
        # (the file order of epoch 0; make_pipeline's shuffle still keys on the epoch).
        cached = for_epoch(0).cache()
        for_epoch = lambda _epoch: cached  # noqa: E731
        pipeline_args = {**pipeline_args, "cache": False}
    epochs = range(first_epoch, max(end_epoch, first_epoch + 1))  # never empty: fit needs one
    stream = None
    for epoch in epochs:
        batches = make_pipeline(for_epoch(epoch), training=True, epoch=epoch, **pipeline_args)
        batches = batches.repeat().take(steps_per_epoch)
        stream = batches if stream is None else stream.concatenate(batches)
    return stream.prefetch(tf.data.AUTOTUNE)


def _check_flags(drop_remainder, **flags):
    """Raise unless every flag is a bool; returns `drop_remainder` resolved (None: as
    `training`)."""
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"`{name}` must be True or False; received {name}={value!r}.")
    if drop_remainder is None:
        return bool(flags["training"])
    if not isinstance(drop_remainder, (bool, np.bool_)):
        raise ValueError(
            f"`drop_remainder` must be None, True or False; received {drop_remainder!r}."
        )
    return drop_remainder


def _check_dataset(dataset):
    if isinstance(dataset, DatasetSplits):
        raise ValueError(
            "`dataset` must be one split, e.g. `splits.train` or `splits.val`; "
            "received the whole DatasetSplits."
        )
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"`dataset` must be a tf.data.Dataset; received {type(dataset).__name__}.")
    spec = dataset.element_spec
    ok = (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], tf.TensorSpec)
        and spec[0].shape.rank == 3
        and spec[0].shape[-1] in (3, None)
    )
    if not ok:
        raise ValueError(
            "`dataset` must yield unbatched (image, label) pairs with images of shape "
            f"(height, width, 3), as `load_dataset` returns; received element_spec={spec}."
        )


def check_seed(seed):
    """`seed` as an int; a `ValueError` unless it is an int in [0, 2**31)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**31:
        fail("seed", "an int in [0, 2**31)", seed)
    return int(seed)
