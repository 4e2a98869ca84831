"""Reading image files for `folder:` datasets: check every file up front, decode lazily.

Every file is decoded once before training, so corrupt, truncated and non-image files
are skipped and reported rather than ending an epoch; training then decodes them again
in the `tf.data` pipeline, with TensorFlow where it reads the format exactly like PIL
and with PIL otherwise (BMP, TIFF, WebP, 16-bit and float images). An image whose header
claims more than the pixel budget (`keras_googlenet.input_files.MAX_IMAGE_PIXELS`) is
refused before anything is decoded: the check fails at once, naming the file.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time

import numpy as np
import tensorflow as tf

from keras_googlenet.input_files import (
    HIGH_BIT_DEPTH_MODES,
    ImageTooLargeError,
    open_image,
    pil_to_rgb8,
    read_rgb8,
)

logger = logging.getLogger("keras_googlenet.data")

# Image formats tf.io.decode_image reads exactly like PIL (CMYK JPEG and palette PNG
# included); anything else PIL can open (BMP, TIFF, WebP, ...) is decoded with PIL.
TF_DECODABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF"})  # MPO: camera JPEGs
# While folder images are checked: how often to log progress (seconds).
SCAN_PROGRESS_SECONDS = 10.0


def scan_images(files):
    """Fully decode every file once, so bad ones are known before training starts.

    Logs progress with a rate and the time left every `SCAN_PROGRESS_SECONDS`, and the
    total time at the end, when the check takes that long.

    Returns:
        `(readable, use_pil)`: boolean arrays; `use_pil` marks formats that
        `tf.io.decode_image` does not read.

    Raises:
        ImageTooLargeError: (a `ValueError`) naming the first file over the pixel budget;
            the files not yet checked are not opened.
    """
    if not files:
        return np.zeros(0, bool), np.zeros(0, bool)
    # PIL releases the GIL while decoding, so threads scale over the cores.
    workers = min(32, 2 * (os.cpu_count() or 1))
    total = len(files)
    started = last_report = time.monotonic()
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as executor:
        for done, result in enumerate(executor.map(_scan_image, files), 1):
            if isinstance(result, ImageTooLargeError):
                executor.shutdown(wait=True, cancel_futures=True)
                raise result
            results.append(result)
            now = time.monotonic()
            if now - last_report >= SCAN_PROGRESS_SECONDS and done < total:
                rate = done / max(now - started, 1e-9)
                logger.info("checking images: %d of %d (%d %%), %.0f files/s, about %s left",
                            done, total, 100 * done // total, rate,
                            _duration((total - done) / rate))
                last_report = now
    elapsed = time.monotonic() - started
    if elapsed >= SCAN_PROGRESS_SECONDS:
        logger.info("checked %d images in %s (%.2f ms a file)", total, _duration(elapsed),
                    1e3 * elapsed / total)
    readable, use_pil = zip(*results, strict=True)
    return np.array(readable, dtype=bool), np.array(use_pil, dtype=bool)


def _duration(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


def _scan_image(path):
    """`(readable, use_pil)`, or the `ImageTooLargeError` of a file over the pixel budget."""
    try:
        with open_image(path) as image:
            image_format = image.format
            image.load()  # raises on truncated or corrupt data (LOAD_TRUNCATED_IMAGES is off)
            high_bit_depth = image.mode in HIGH_BIT_DEPTH_MODES
            if high_bit_depth:
                pil_to_rgb8(image)  # raises for a range it cannot scale: skipped, reported
        # 16-bit and float images go through pil_to_rgb8, which scales them like predict.
        return True, high_bit_depth or image_format not in TF_DECODABLE_FORMATS
    except ImageTooLargeError as error:
        return error
    except Exception:  # PIL raises many types for bad files; any of them means "skip"
        return False, False


def decoding_dataset(files, labels, use_pil, shuffle_seed=None, epoch=None):
    """`(path, label)` -> `(uint8 RGB image, label)`, decoded lazily in the pipeline.

    With `shuffle_seed`, the file list is shuffled before decoding: shuffling paths costs
    bytes per file, shuffling decoded images megabytes. With `epoch` too, the order is
    that epoch's alone (a function of the two), so a resumed run reads what an
    uninterrupted one would have; without it, it is reshuffled at every pass.
    """
    any_pil = bool(np.any(use_pil))

    def decode(path, label, pil):
        def with_tf():
            return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)

        def with_pil():
            # The budget again: the file may have changed since the scan (the error drops it).
            image = tf.numpy_function(read_rgb8, [path], tf.uint8, stateful=False)
            image.set_shape((None, None, 3))
            return image

        # The PIL branch only exists when needed, keeping the usual graph pure TF.
        image = tf.cond(pil, with_pil, with_tf) if any_pil else with_tf()
        image.set_shape((None, None, 3))
        return image, label

    if shuffle_seed is not None and epoch is not None:
        order = np.random.default_rng([shuffle_seed, epoch]).permutation(len(files))
        files, labels, use_pil = (np.asarray(a)[order] for a in (files, labels, use_pil))
    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.constant(files, tf.string), tf.constant(labels, tf.int32), tf.constant(use_pil))
    )
    if shuffle_seed is not None and epoch is None and len(files):
        dataset = dataset.shuffle(len(files), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # Every file decoded once in the up-front scan; should one still fail (changed on
    # disk since), drop it with a logged warning rather than end training mid-epoch.
    return dataset.ignore_errors(log_warning=True)
