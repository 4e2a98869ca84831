"""Dataset loading (data, tfds_data, folder_data, image_files) and the Inception input
pipelines (pipeline)."""

import logging
import os
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_googlenet_training import augment, data, folder_data, image_files, pipeline, tfds_data

INPUT_SIZE = 32


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits", seed=0)


def _batches(pipeline):
    return [(images.numpy(), labels.numpy()) for images, labels in pipeline]


def _train_pipeline(dataset, seed, **kwargs):
    kwargs.setdefault("input_size", INPUT_SIZE)
    kwargs.setdefault("batch_size", 64)
    return pipeline.make_pipeline(dataset, training=True, seed=seed, **kwargs)


# ---------------------------------------------------------------------------------
# digits


def test_digits_split_sizes_and_stratification(digits):
    assert digits.source == "digits"
    assert digits.skipped == []
    assert digits.class_names == [str(i) for i in range(10)]
    assert digits.num_train + digits.num_val == 1797
    assert digits.num_val == pytest.approx(0.2 * 1797, abs=10)
    spec = digits.train.element_spec
    assert spec[0].shape == (8, 8, 3) and spec[0].dtype == tf.uint8
    assert spec[1].shape == () and spec[1].dtype == tf.int32

    train_images, train_labels = (
        np.stack(x) for x in zip(*digits.train.as_numpy_iterator(), strict=True)
    )
    val_images, val_labels = (
        np.stack(x) for x in zip(*digits.val.as_numpy_iterator(), strict=True)
    )
    assert len(train_labels) == digits.num_train and len(val_labels) == digits.num_val
    # Stratified: every class holds out ~20 % of its examples.
    for label in range(10):
        n_train, n_val = np.sum(train_labels == label), np.sum(val_labels == label)
        assert n_val == round(0.2 * (n_train + n_val))
    # [0, 16] gray levels -> [0, 255], replicated to RGB.
    assert train_images.max() == 255 and train_images.min() == 0
    np.testing.assert_array_equal(train_images[..., 0], train_images[..., 2])
    # Train and val are disjoint.
    train_keys = {
        img.tobytes() + bytes([lab]) for img, lab in zip(train_images, train_labels, strict=True)
    }
    val_keys = [
        img.tobytes() + bytes([lab]) for img, lab in zip(val_images, val_labels, strict=True)
    ]
    assert sum(key in train_keys for key in val_keys) < 5  # digits has a few duplicates


def test_digits_split_is_seeded():
    def val_labels(seed, fraction=0.2):
        splits = data.load_dataset("digits", seed=seed, val_fraction=fraction)
        return np.array([int(lab) for _, lab in splits.val.as_numpy_iterator()]), splits

    a, _ = val_labels(0)
    b, _ = val_labels(0)
    c, _ = val_labels(1)
    np.testing.assert_array_equal(a, b)
    images = [data.load_dataset("digits", seed=s).val.take(20) for s in (0, 1)]
    first, second = ([img for img, _ in ds.as_numpy_iterator()] for ds in images)
    assert not all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))
    _, half = val_labels(0, fraction=0.5)
    assert half.num_val == pytest.approx(1797 / 2, abs=10)


# ---------------------------------------------------------------------------------
# make_pipeline


def test_pipeline_shapes_dtypes_and_ranges(digits):
    train = _batches(_train_pipeline(digits.train, seed=0, flip=False))
    assert len(train) == digits.num_train // 64  # drop_remainder defaults to True for training
    for images, labels in train:
        assert images.shape == (64, INPUT_SIZE, INPUT_SIZE, 3) and images.dtype == np.float32
        assert labels.shape == (64,) and labels.dtype == np.int32
        assert images.min() >= -1.0 and images.max() <= 1.0
    all_train = np.concatenate([images for images, _ in train])
    assert all_train.min() < -0.9 and all_train.max() > 0.9  # the [-1, 1] range is used

    val = _batches(
        pipeline.make_pipeline(digits.val, input_size=INPUT_SIZE, batch_size=64, training=False)
    )
    assert sum(len(labels) for _, labels in val) == digits.num_val  # evaluation keeps all
    assert val[-1][0].shape[0] == digits.num_val % 64
    assert all(images.min() >= -1.0 and images.max() <= 1.0 for images, _ in val)
    # Evaluation is deterministic: labels in dataset order, same images every pass.
    np.testing.assert_array_equal(
        np.concatenate([labels for _, labels in val]),
        [int(lab) for _, lab in digits.val.as_numpy_iterator()],
    )
    again = _batches(
        pipeline.make_pipeline(digits.val, input_size=INPUT_SIZE, batch_size=64, training=False)
    )
    np.testing.assert_array_equal(val[0][0], again[0][0])

    static = _train_pipeline(digits.train, seed=0).element_spec
    assert static[0].shape == (64, INPUT_SIZE, INPUT_SIZE, 3)  # static for tf.distribute
    assert static[1].shape == (64,)


def test_pipeline_is_deterministic_under_seed(digits):
    small = digits.train.take(256)
    first = _train_pipeline(small, seed=7, batch_size=32)
    second = _train_pipeline(small, seed=7, batch_size=32)
    other = _train_pipeline(small, seed=8, batch_size=32)

    epoch1, epoch2 = _batches(first), _batches(first)
    again1, again2 = _batches(second), _batches(second)
    for (a_img, a_lab), (b_img, b_lab) in zip(epoch1 + epoch2, again1 + again2, strict=True):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_lab, b_lab)
    # A new epoch reshuffles and re-augments ...
    assert not np.array_equal(epoch1[0][1], epoch2[0][1])
    assert not np.array_equal(epoch1[0][0], epoch2[0][0])
    # Without shuffling (buffer 1), the order repeats but the augmentation does not.
    ordered = _train_pipeline(small, seed=7, batch_size=32, shuffle_buffer=1)
    (img1, lab1), (img2, lab2) = _batches(ordered)[0], _batches(ordered)[0]
    np.testing.assert_array_equal(lab1, lab2)
    assert not np.array_equal(img1, img2)
    # ... and so does another seed.
    other1 = _batches(other)
    assert not np.array_equal(epoch1[0][1], other1[0][1])
    assert not np.array_equal(epoch1[0][0], other1[0][0])


def test_repeated_pipeline_reaugments_every_epoch(digits):
    # The trainer calls .repeat() on the pipeline: each pass must be a new epoch.
    small = digits.train.take(64)
    repeated = _batches(_train_pipeline(small, seed=2, batch_size=64).repeat(2))
    separate = _train_pipeline(small, seed=2, batch_size=64)
    expected = _batches(separate) + _batches(separate)
    assert len(repeated) == 2
    for (a_img, a_lab), (b_img, b_lab) in zip(repeated, expected, strict=True):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(repeated[0][0], repeated[1][0])


def test_cache_gives_the_same_batches(digits):
    small = digits.train.take(128)
    cached = _batches(_train_pipeline(small, seed=3, batch_size=32, cache=True))
    plain = _batches(_train_pipeline(small, seed=3, batch_size=32))
    for (a, _), (b, _) in zip(cached, plain, strict=True):
        np.testing.assert_array_equal(a, b)


def test_augmentation_changes_images_but_not_labels(digits):
    small = digits.train.take(64)
    plain = _batches(_train_pipeline(small, seed=1, batch_size=64, flip=False, distort=False))
    distorted = _batches(_train_pipeline(small, seed=1, batch_size=64, flip=False))
    np.testing.assert_array_equal(plain[0][1], distorted[0][1])
    assert np.abs(plain[0][0] - distorted[0][0]).max() > 0.05


def test_flip_flag():
    # Left half black, right half white: unflipped crops stay dark on the left.
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 32:] = 255

    def left_darker(flip):
        result = []
        for seed in range(40):
            out = augment.train_augment(image, 16, seed, flip=flip, distort=False).numpy()
            result.append(out[:, 0].mean() <= out[:, -1].mean())
        return result

    assert all(left_darker(flip=False))
    flipped = left_darker(flip=True)
    assert 5 < flipped.count(False) < 35  # about half the crops are mirrored


def test_distortion_keeps_gray_images_gray_and_in_range():
    rng = np.random.default_rng(0)
    gray = np.repeat(rng.integers(0, 256, (20, 20, 1), dtype=np.uint8), 3, axis=-1)
    changed = False
    for seed in range(10):
        out = augment.distort_color(tf.cast(gray, tf.float32), seed).numpy()
        assert out.min() >= 0.0 and out.max() <= 255.0
        np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1.0)
        np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1.0)
        changed |= np.abs(out - gray).max() > 5
    assert changed


def test_inception_crop_box_statistics():
    height, width = 300, 400

    @tf.function
    def boxes(seeds):
        return tf.map_fn(
            lambda s: tf.stack(augment.inception_crop_box((height, width, 3), s)),
            seeds,
            fn_output_signature=tf.int32,
        )

    seeds = tf.stack([tf.range(2000, dtype=tf.int64), tf.fill([2000], tf.constant(5, tf.int64))], 1)
    offset_y, offset_x, crop_h, crop_w = boxes(seeds).numpy().T
    area = crop_h * crop_w / (height * width)
    aspect = crop_w / crop_h
    assert np.all(offset_y >= 0) and np.all(offset_y + crop_h <= height)
    assert np.all(offset_x >= 0) and np.all(offset_x + crop_w <= width)
    assert np.all(area >= 0.08) and np.all(area <= 1.0)
    # The width is rounded to whole pixels: aspect within [3/4, 4/3] up to half a pixel.
    assert np.all(aspect >= 3 / 4 - 0.5 / crop_h) and np.all(aspect <= 4 / 3 + 0.5 / crop_h)
    assert np.mean((aspect >= 3 / 4 - 1e-3) & (aspect <= 4 / 3 + 1e-3)) > 0.95
    # The distribution really spreads over the ranges.
    assert np.mean(area < 0.3) > 0.1 and np.mean(area > 0.7) > 0.05
    assert np.mean(aspect < 0.85) > 0.05 and np.mean(aspect > 1.2) > 0.05
    assert len(set(zip(offset_y, offset_x, strict=True))) > 1500
    # Same seed, same box; another seed, another box.
    box = [int(v) for v in augment.inception_crop_box((height, width, 3), [1, 2])]
    assert box == [int(v) for v in augment.inception_crop_box((height, width, 3), [1, 2])]


def test_area_range_bounds_the_crop():
    shape = (40, 40, 3)
    areas = [
        np.prod([int(v) for v in augment.inception_crop_box(shape, s, (0.5, 1.0))[2:]]) / 1600
        for s in range(200)
    ]
    assert min(areas) >= 0.5 and max(areas) > 0.8
    with pytest.raises(ValueError, match="`area_range`"):
        augment.inception_crop_box(shape, 0, (0.0, 1.0))
    with pytest.raises(ValueError, match="`area_range`"):
        pipeline.make_pipeline(
            tf.data.Dataset.from_tensors((np.zeros(shape, np.uint8), 0)),
            input_size=8,
            batch_size=1,
            training=True,
            area_range=0.5,
        )


def test_inception_crop_crops_the_sampled_box_and_resizes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    for seed in range(5):
        y, x, h, w = (int(v) for v in augment.inception_crop_box(image.shape, seed))
        expected = tf.image.resize(image[y : y + h, x : x + w], (24, 24)).numpy()
        out = augment.inception_crop(image, 24, seed).numpy()
        assert out.shape == (24, 24, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, np.clip(expected, 0, 255), atol=1e-3)


def test_central_crop():
    # 16x16 with a 1-pixel white frame: 87.5 % of each side is exactly the inside.
    inside = np.arange(14 * 14 * 3, dtype=np.uint8).reshape(14, 14, 3)
    image = np.full((16, 16, 3), 255, np.uint8)
    image[1:15, 1:15] = inside
    out = augment.central_crop(image, 14).numpy()
    assert out.dtype == np.float32 and out.shape == (14, 14, 3)
    np.testing.assert_allclose(out, inside, atol=1e-4)
    resized = augment.central_crop(image, 28).numpy()
    assert resized.shape == (28, 28, 3) and resized.max() < 255  # no frame left
    np.testing.assert_allclose(augment.central_crop(image, 16, fraction=1.0).numpy(), image)
    with pytest.raises(ValueError, match="`fraction`"):
        augment.central_crop(image, 14, fraction=0.0)
    with pytest.raises(ValueError, match="`size`"):
        augment.central_crop(image, 0)


def test_make_pipeline_rejects_bad_arguments(digits):
    with pytest.raises(ValueError, match="`input_size`"):
        pipeline.make_pipeline(digits.train, input_size=0, batch_size=8, training=True)
    with pytest.raises(ValueError, match="`batch_size`"):
        pipeline.make_pipeline(digits.train, input_size=32, batch_size=2.5, training=True)
    with pytest.raises(ValueError, match="`variant`"):
        pipeline.make_pipeline(digits.train, input_size=32, batch_size=8, training=True,
                               variant="x")
    with pytest.raises(ValueError, match="`dataset` must be one split"):
        pipeline.make_pipeline(digits, input_size=32, batch_size=8, training=True)
    with pytest.raises(ValueError, match="`dataset` must yield"):
        pipeline.make_pipeline(digits.train.batch(4), input_size=32, batch_size=8, training=True)
    with pytest.raises(ValueError, match="`batch_size`"):
        pipeline.make_pipeline(digits.train.take(10), input_size=32, batch_size=16, training=True)
    with pytest.raises(ValueError, match="`seed`"):
        pipeline.make_pipeline(digits.train, input_size=32, batch_size=8, training=True, seed=-1)


# ---------------------------------------------------------------------------------
# load_dataset: spec errors


@pytest.mark.parametrize("spec", ["csv:foo", "tfds:", "folder:", "digit", "", None])
def test_bad_spec_is_a_clear_error(spec):
    with pytest.raises(ValueError, match="`dataset`") as info:
        data.load_dataset(spec)
    for form in ("digits", "tfds:NAME", "folder:PATH"):
        assert form in str(info.value)


def test_bad_val_fraction_and_seed():
    with pytest.raises(ValueError, match="`val_fraction`"):
        data.load_dataset("digits", val_fraction=1.0)
    with pytest.raises(ValueError, match="`seed`"):
        data.load_dataset("digits", seed="0")


# ---------------------------------------------------------------------------------
# Image folders

# One saturated color per class, so a decoded image tells which folder it came from.
COLORS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def _save(path, color, mode, image_format, size=(12, 10)):
    image = Image.new("RGB", size, color)
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode != "RGB":
        image = image.convert(mode)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, image_format)


def _write_class(root, name, count, formats=(("RGB", "JPEG", ".jpg"),)):
    for i in range(count):
        mode, image_format, ext = formats[i % len(formats)]
        _save(os.path.join(root, name, f"{i}{ext}"), COLORS[name], mode, image_format)


def _images_by_label(dataset):
    return [(image, int(label)) for image, label in dataset.as_numpy_iterator()]


def _assert_colors_match_labels(pairs, class_names, gray_classes=()):
    for image, label in pairs:
        assert image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8
        name = class_names[label]
        pixel = image[image.shape[0] // 2, image.shape[1] // 2].astype(int)
        if name in gray_classes and np.ptp(pixel) < 3:
            continue  # a grayscale file of that class: gray, equal channels
        assert np.abs(pixel - COLORS[name]).max() < 30, (name, pixel)


def test_folder_decodes_every_mode_and_skips_bad_files(tmp_path, caplog):
    root = tmp_path / "shapes"
    formats = (
        ("RGB", "JPEG", ".jpg"),
        ("CMYK", "JPEG", ".jpeg"),
        ("P", "PNG", ".png"),
        ("RGBA", "PNG", ".png4"),
        ("L", "PNG", ".gray.png"),
        ("RGB", "BMP", ".bmp"),
        ("CMYK", "TIFF", ".tif"),
        ("P", "GIF", ".gif"),
    )
    for name in COLORS:
        _write_class(root, name, 8, formats)
    bad = []
    (root / "red" / "notes.txt").write_text("not an image")
    bad.append(root / "red" / "notes.txt")
    (root / "green" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    bad.append(root / "green" / "corrupt.png")
    full = (root / "blue" / "0.jpg").read_bytes()
    (root / "blue" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    bad.append(root / "blue" / "truncated.jpg")
    (root / "blue" / ".DS_Store").write_bytes(b"\0\1junk")  # hidden: ignored, not reported

    with caplog.at_level(logging.WARNING, logger="keras_googlenet.data"):
        splits = data.load_dataset(f"folder:{root}", seed=0, val_fraction=0.25)

    assert splits.class_names == ["blue", "green", "red"]
    assert sorted(splits.skipped) == sorted(str(p) for p in bad)
    assert any("Skipped 3 " in record.getMessage() for record in caplog.records)
    assert splits.num_train + splits.num_val == 24
    assert splits.num_val == 6  # 2 of 8 per class
    assert splits.source == f"folder:{root}"

    train, val = _images_by_label(splits.train), _images_by_label(splits.val)
    assert len(train) == splits.num_train and len(val) == splits.num_val
    assert sorted(lab for _, lab in val) == [0, 0, 1, 1, 2, 2]
    _assert_colors_match_labels(train + val, splits.class_names, gray_classes=COLORS)
    # Grayscale files decode to three equal channels.
    grays = [img for img, _ in train + val if np.ptp(img[5, 5].astype(int)) < 3]
    assert len(grays) == 3

    # Through the pipeline too, nothing crashes on the bad files.
    batches = _batches(
        pipeline.make_pipeline(splits.train, input_size=16, batch_size=4, training=True, seed=0)
    )
    assert len(batches) == splits.num_train // 4


def test_cmyk_jpeg_and_palette_png_decode_like_pil(tmp_path):
    # Four flat 8x8-aligned quadrants: JPEG blocks stay flat, so decoders agree closely.
    quadrants = [(200, 30, 60), (20, 180, 90), (240, 240, 20), (10, 10, 10)]
    pixels = np.zeros((16, 16, 3), np.uint8)
    for i, color in enumerate(quadrants):
        pixels[(i // 2) * 8 : (i // 2) * 8 + 8, (i % 2) * 8 : (i % 2) * 8 + 8] = color
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    for name in ("cmyk.jpg", "p.png"):
        with Image.open(tmp_path / name) as image:
            assert image.mode == name.split(".")[0].upper()
            expected = np.asarray(image.convert("RGB"), dtype=int)
        decoded = image_files.decoding_dataset(
            np.array([str(tmp_path / name)]), np.array([0], np.int32), np.array([False])
        )
        image, _ = next(iter(decoded.as_numpy_iterator()))
        assert image.shape == (16, 16, 3)
        assert np.abs(image.astype(int) - expected).max() <= 3, name
        assert np.abs(image.astype(int) - pixels).max() <= 6, name


def test_folder_train_val_layout(tmp_path):
    root = tmp_path / "ds"
    for name in COLORS:
        _write_class(root / "train", name, 3)
    _write_class(root / "val", "red", 2)
    _write_class(root / "val", "blue", 1)  # val may lack a class

    splits = data.load_dataset(f"folder:{root}", seed=0)
    assert splits.class_names == ["blue", "green", "red"]
    assert (splits.num_train, splits.num_val) == (9, 3)
    val = _images_by_label(splits.val)
    assert sorted(lab for _, lab in val) == [0, 2, 2]
    _assert_colors_match_labels(val + _images_by_label(splits.train), splits.class_names)
    assert splits.skipped == []

    _write_class(root / "val", "blue", 1)
    os.makedirs(root / "val" / "purple")
    with pytest.raises(ValueError, match="purple"):
        data.load_dataset(f"folder:{root}")


def test_folder_check_reports_progress_and_rate(tmp_path, caplog, monkeypatch):
    root = tmp_path / "ds"
    for name in COLORS:
        _write_class(root, name, 4)
    monkeypatch.setattr(image_files, "SCAN_PROGRESS_SECONDS", 0.0)  # report after every file
    with caplog.at_level(logging.INFO, logger="keras_googlenet.data"):
        data.load_dataset(f"folder:{root}", seed=0, val_fraction=0.25)
    progress = [r.getMessage() for r in caplog.records if "checking images" in r.getMessage()]
    assert progress[0].startswith("checking images: 1 of 12 (8 %)")
    assert progress[-1].startswith("checking images: 11 of 12 (91 %)")
    assert "files/s, about 0 min 00 s left" in progress[-1]
    done = [r.getMessage() for r in caplog.records if r.getMessage().startswith("checked ")]
    assert len(done) == 1 and done[0].startswith("checked 12 images in 0 min")


def test_file_gone_after_scan_is_dropped_not_fatal(tmp_path):
    root = tmp_path / "ds"
    for name in COLORS:
        _write_class(root, name, 4)
    splits = data.load_dataset(f"folder:{root}", seed=0, val_fraction=0.25)
    assert splits.num_train == 9
    os.remove(root / "red" / "0.jpg")
    os.remove(root / "red" / "1.jpg")
    os.remove(root / "red" / "2.jpg")
    os.remove(root / "red" / "3.jpg")
    left = len(_images_by_label(splits.train)) + len(_images_by_label(splits.val))
    assert left == 8  # the four red files are dropped, with a logged warning


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        data.load_dataset(f"folder:{tmp_path / 'missing'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="at least two"):
        data.load_dataset(f"folder:{empty}")
    single = tmp_path / "single"
    _write_class(single, "red", 4)
    with pytest.raises(ValueError, match="at least two"):
        data.load_dataset(f"folder:{single}")
    unreadable = tmp_path / "unreadable"
    _write_class(unreadable, "red", 4)
    os.makedirs(unreadable / "green")
    (unreadable / "green" / "a.txt").write_text("text")
    with pytest.raises(ValueError, match="green"):
        data.load_dataset(f"folder:{unreadable}")


# ---------------------------------------------------------------------------------
# TFDS


def _write_tfds_metadata(tfds, name, data_dir, split_sizes, label_names=None):
    """The metadata files `tfds build` writes (dataset_info.json, features.json, labels)."""
    builder = tfds.builder(name, data_dir=str(data_dir))
    if label_names:  # e.g. cifar10 reads its class names from the download at build time
        builder.info.features["label"].names = label_names
    builder.info.set_splits(
        tfds.core.SplitDict(
            [
                tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0, filename_template=None)
                for s, n in split_sizes.items()
            ]
        )
    )
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
    builder.info.features.save_metadata(builder.data_dir)  # label.labels.txt: class names


def test_tfds_prepared_dataset_loads_offline(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    _write_tfds_metadata(tfds, "cifar10", tmp_path, {"train": 12, "test": 4}, names)
    start = time.monotonic()
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
        splits = data.load_dataset("tfds:cifar10", data_dir=str(tmp_path), seed=0)
        assert splits.class_names == names
        assert splits.source == "tfds:cifar10" and splits.skipped == []
        # No validation split: 20 % of train held out; test stays the test split.
        assert (splits.num_train, splits.num_val) == (10, 2)
        assert splits.test_split == "test" and splits.num_test == 12
        train = _images_by_label(splits.train)
        assert len(train) == 10
        assert all(img.shape == (32, 32, 3) and img.dtype == np.uint8 for img, _ in train)
        assert all(0 <= lab < 10 for _, lab in train)
        assert splits.val.element_spec[1].dtype == tf.int32
        batches = _batches(
            pipeline.make_pipeline(splits.train, input_size=INPUT_SIZE, batch_size=4, training=True)
        )
        assert len(batches) == 2 and batches[0][0].shape == (4, INPUT_SIZE, INPUT_SIZE, 3)
    assert time.monotonic() - start < 20


def test_tfds_grayscale_without_validation_split_is_split_by_seed(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    _write_tfds_metadata(tfds, "mnist", tmp_path, {"train": 20})  # no validation, no test
    with tfds.testing.mock_data(num_examples=20, data_dir=str(tmp_path)):
        splits = data.load_dataset("tfds:mnist", data_dir=str(tmp_path), val_fraction=0.25)
        assert (splits.num_train, splits.num_val) == (15, 5)
        train, val = _images_by_label(splits.train), _images_by_label(splits.val)
        assert (len(train), len(val)) == (15, 5)
        assert all(img.shape == (28, 28, 3) for img, _ in train + val)  # gray -> RGB
        np.testing.assert_array_equal(train[0][0][..., 0], train[0][0][..., 2])
        keys = {img.tobytes() for img, _ in train}
        assert not any(img.tobytes() in keys for img, _ in val)  # disjoint


def test_tfds_not_prepared_is_a_fast_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    start = time.monotonic()
    with pytest.raises(tfds_data.DatasetUnavailableError, match="tfds build cifar10 --data_dir"):
        data.load_dataset("tfds:cifar10", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="ILSVRC2012_img_train.tar"):
        data.load_dataset("tfds:imagenet2012", data_dir=str(tmp_path))
    assert time.monotonic() - start < 20
    assert not any(tmp_path.iterdir())  # nothing was downloaded or written


def test_tfds_unknown_or_unsuitable_dataset():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match="no dataset 'no_such_dataset'"):
        data.load_dataset("tfds:no_such_dataset")
    with pytest.raises(ValueError, match="not an image-classification dataset"):
        data.load_dataset("tfds:glue")


def test_folder_files_are_reshuffled_every_epoch_before_decoding(tmp_path):
    root = tmp_path / "ds"
    for name in COLORS:
        _write_class(root, name, 10)
    splits = data.load_dataset(f"folder:{root}", seed=3, val_fraction=0.2)
    assert splits.shuffle_buffer == folder_data.FOLDER_SHUFFLE_BUFFER < 10_000

    def label_order(dataset):
        return [int(label) for _, label in dataset.as_numpy_iterator()]

    first, second = label_order(splits.train), label_order(splits.train)
    assert sorted(first) == sorted(second) and len(first) == splits.num_train == 24
    assert first != second  # a new order every epoch
    again = data.load_dataset(f"folder:{root}", seed=3, val_fraction=0.2)
    assert label_order(again.train) == first  # reproducible under the seed
    assert label_order(splits.val) == label_order(splits.val)  # validation is not shuffled


# ---------------------------------------------------------------------------------
# #18: what a folder walk counts, the test split kept apart, the pixel budget, names


def _unique_images(root, name, count, first_width):
    """`count` images of class `name`, told apart by their width."""
    for i in range(count):
        _save(os.path.join(root, name, f"{i}.png"), COLORS[name], "RGB", "PNG",
              size=(first_width + i, 10))


def _widths_by_label(dataset):
    return [(int(label), image.shape[1]) for image, label in dataset.as_numpy_iterator()]


def test_folder_symlink_loop_and_linked_files_are_counted_once(tmp_path, caplog):
    root = tmp_path / "ds"
    _unique_images(root, "blue", 5, 10)
    _unique_images(root, "red", 5, 20)
    os.symlink("..", root / "blue" / "loop")  # back up to the dataset: once walked ~40 times
    os.symlink("../red", root / "blue" / "reds")  # into another class: not a second label
    os.symlink("0.png", root / "red" / "again.png")  # the same file by a second name
    os.link(root / "red" / "1.png", root / "red" / "hard.png")  # and by a hard link
    os.makedirs(root / "red" / "nested")
    os.symlink("../../blue", root / "red" / "nested" / "blues")

    with caplog.at_level(logging.WARNING, logger="keras_googlenet.data"):
        splits = data.load_dataset(f"folder:{root}", seed=0, val_fraction=0.4)
    assert splits.class_names == ["blue", "red"]
    assert (splits.num_train, splits.num_val) == (6, 4)  # 10 files, each once
    assert any("Counted once: 2 paths" in r.getMessage() for r in caplog.records)
    train, val = _widths_by_label(splits.train), _widths_by_label(splits.val)
    assert sorted(train + val) == [(0, w) for w in range(10, 15)] + [(1, w) for w in range(20, 25)]
    assert not set(train) & set(val)  # no file in both splits


def test_folder_file_linked_from_val_tree_is_in_one_split_only(tmp_path):
    root = tmp_path / "ds"
    _unique_images(root / "train", "blue", 3, 10)
    _unique_images(root / "train", "red", 3, 20)
    _unique_images(root / "val", "red", 1, 30)
    os.symlink("../../train/red/0.png", root / "val" / "red" / "leak.png")
    os.symlink("../../train", root / "val" / "red" / "everything")
    splits = data.load_dataset(f"folder:{root}", seed=0)
    assert (splits.num_train, splits.num_val) == (6, 1)
    assert _widths_by_label(splits.val) == [(1, 30)]
    assert splits.val_split == "val/ folder" and splits.test is None


def test_folder_class_name_with_a_line_break_is_refused(tmp_path):
    root = tmp_path / "ds"
    _write_class(root, "red", 2)
    os.makedirs(root / "two\nlines")
    with pytest.raises(ValueError, match="not a UTF-8 name on one line"):
        data.load_dataset(f"folder:{root}")


def _huge_png(path, size=(10_000, 6_000)):
    """A real 1-bit PNG of 60 megapixels: 7 KB on disk, 180 MB decoded as RGB."""
    Image.new("1", size).save(path, optimize=True)
    return path


def test_folder_image_over_the_pixel_budget_is_refused_naming_it(tmp_path):
    root = tmp_path / "ds"
    _write_class(root, "red", 3)
    _write_class(root, "blue", 3)
    big = _huge_png(root / "blue" / "panorama.png")
    assert os.path.getsize(big) < 20_000
    with pytest.raises(ValueError) as refused:
        data.load_dataset(f"folder:{root}", seed=0)
    message = str(refused.value)
    assert str(big) in message and "10000x6000" in message and "50-megapixel" in message
    assert "\n" not in message and message.startswith("`dataset`:")


def test_tfds_unknown_version_names_the_versions_available():
    pytest.importorskip("tensorflow_datasets")
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"no version '9\.9\.9'.*versions available: 3\.0\.1"):
        data.load_dataset("tfds:mnist:9.9.9")
    with pytest.raises(ValueError, match="'abc' .* is not a TFDS version"):
        data.load_dataset("tfds:mnist:abc")
    assert time.monotonic() - start < 20  # nothing looked up on the network


def _train_and_test_only_tfds(data_dir, name=None):
    """A real prepared TFDS dataset (files on disk, no mock) with `train` and `test` splits
    only; every image's pixels tell its split and index (train 0.., test 100..)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    name = name or _TRAIN_AND_TEST_ONLY
    tfds.builder(name, data_dir=str(data_dir)).download_and_prepare()  # nothing downloaded
    return f"tfds:{name}"


_TRAIN_AND_TEST_ONLY = "googlenet_test_train_and_test_only"
try:
    import tensorflow_datasets as _tfds

    class GooglenetTestTrainAndTestOnly(_tfds.core.GeneratorBasedBuilder):
        VERSION = _tfds.core.Version("1.0.0")

        def _info(self):
            return _tfds.core.DatasetInfo(builder=self, features=_tfds.features.FeaturesDict({
                "image": _tfds.features.Image(shape=(8, 8, 3)),
                "label": _tfds.features.ClassLabel(names=["café", "日本"])}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 20),
                    "test": self._generate_examples(100, 6, self.TEST_LABELLED)}

        TEST_LABELLED = True

        def _generate_examples(self, first, count, labelled=True):
            for i in range(count):
                yield i, {"image": np.full((8, 8, 3), first + i, np.uint8),
                          "label": i % 2 if labelled else -1}

    class GooglenetTestTrainAndValidation(GooglenetTestTrainAndTestOnly):
        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 20),
                    "validation": self._generate_examples(100, 6)}

    class GooglenetTestUnlabelledTest(GooglenetTestTrainAndTestOnly):
        """As ImageNet's: a `test` split whose labels are all -1."""

        TEST_LABELLED = False
except ImportError:
    pass


def _ids(dataset):
    return sorted(int(image[0, 0, 0]) for image, _ in dataset.as_numpy_iterator())


def test_tfds_without_validation_split_holds_out_train_and_keeps_test_apart(tmp_path):
    spec = _train_and_test_only_tfds(tmp_path)
    splits = data.load_dataset(spec, data_dir=str(tmp_path), val_fraction=0.25, seed=1)
    assert (splits.num_train, splits.num_val, splits.num_test) == (15, 5, 6)
    assert splits.val_split == "train (a seeded 25% hold-out, seed 1)"
    assert splits.test_split == "test" and splits.class_names == ["café", "日本"]
    train, val, test = _ids(splits.train), _ids(splits.val), _ids(splits.test)
    assert sorted(train + val) == list(range(20)) and not set(train) & set(val)
    assert test == list(range(100, 106))  # the test split, and only there
    again = data.load_dataset(spec, data_dir=str(tmp_path), val_fraction=0.25, seed=1)
    other = data.load_dataset(spec, data_dir=str(tmp_path), val_fraction=0.25, seed=2)
    assert _ids(again.val) == val and _ids(other.val) != val  # seeded


def test_tfds_train_file_order_is_a_function_of_the_epoch(tmp_path):
    """#18 exact resume: TFDS reshuffled its files at every pass of `train`."""
    spec = _train_and_test_only_tfds(tmp_path, name="googlenet_test_train_and_validation")
    splits = data.load_dataset(spec, data_dir=str(tmp_path), seed=1)
    assert splits.val_split == "validation" and _ids(splits.val) == list(range(100, 106))

    def order(dataset):
        return [int(image[0, 0, 0]) for image, _ in dataset.as_numpy_iterator()]

    epoch1 = order(splits.train_for_epoch(1))
    assert sorted(epoch1) == list(range(20))
    assert order(splits.train_for_epoch(1)) == epoch1  # the same however often it is read


def test_tfds_unlabelled_test_split_is_not_a_test_set(tmp_path):
    spec = _train_and_test_only_tfds(tmp_path, "googlenet_test_unlabelled_test")
    splits = data.load_dataset(spec, data_dir=str(tmp_path))
    assert splits.test is None and splits.num_test == 0 and splits.test_split is None
    assert (splits.num_train, splits.num_val) == (16, 4)


@pytest.mark.slow
def test_training_selects_on_validation_and_reports_test_apart(tmp_path):
    import json

    from keras_googlenet_training.train import train
    from keras_googlenet_training.train_config import TrainConfig

    spec = _train_and_test_only_tfds(tmp_path / "tfds")
    result = train(TrainConfig(
        dataset=spec, data_dir=str(tmp_path / "tfds"), input_size=65, width_multiplier=0.25,
        batch_size=8, epochs=1, aux=False, output_dir=str(tmp_path), run_name="run",
    ), log=lambda *_: None)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics == result.metrics
    assert metrics["validation_split"] == "train (a seeded 20% hold-out, seed 0)"
    assert (metrics["num_train"], metrics["num_val"]) == (16, 4)
    assert metrics["test_split"] == "test" and metrics["num_test"] == 6
    assert 0.0 <= metrics["test_main_accuracy"] <= 1.0 and np.isfinite(metrics["test_loss"])
    labels = (tmp_path / "run" / "labels.txt").read_bytes()
    assert labels == "café\n日本\n".encode()  # the names exactly, as UTF-8


def test_load_image_refuses_an_image_over_the_pixel_budget_before_decoding(tmp_path):
    from keras_googlenet.runtime import load_image

    big = _huge_png(tmp_path / "bomb.png")
    with pytest.raises(ValueError, match=r"bomb\.png.*10000x6000 \(60\.0 megapixels\)"):
        load_image(big, (32, 32))
    with Image.open(big) as lazy, pytest.raises(ValueError, match="10000x6000"):
        load_image(lazy, (32, 32))  # a lazily opened PIL image is checked too
    small = tmp_path / "small.png"
    _save(small, COLORS["red"], "RGB", "PNG", size=(40, 30))
    assert load_image(small, (32, 32)).shape == (32, 32, 3)  # a normal image still loads


@pytest.mark.slow
def test_a_small_file_claiming_a_huge_image_never_takes_much_memory(tmp_path):
    import subprocess
    import sys

    big = _huge_png(tmp_path / "bomb.png", size=(12_000, 12_000))  # 144 MP: 430 MB as RGB
    script = (
        "import resource, sys\n"
        "from keras_googlenet.runtime import load_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    load_image(sys.argv[1], (32, 32))\n"
        "except ValueError as error:\n"
        "    print('refused:', error)\n"
        "print('grew_mb', (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(big)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"refused: image {str(big)!r} is 12000x12000" in done.stdout
    grew = int(done.stdout.split("grew_mb")[1])
    assert grew < 100, done.stdout  # decoding it would take over 400 MB


def test_labels_files_are_read_as_utf8_with_bom_and_crlf(tmp_path):
    from keras_googlenet.export.cards import read_labels
    from keras_googlenet.model_card import read_run_dir

    names = ["café", "日本", "two words"]
    (tmp_path / "labels.txt").write_bytes(
        b"\xef\xbb\xbf" + "\r\n".join(names).encode() + b"\r\n\r\n")
    assert read_run_dir(tmp_path)["labels"] == names  # a run's labels.txt
    assert read_labels(str(tmp_path / "labels.txt")) == names  # export --labels

    from keras_googlenet.input_files import read_lines

    assert read_lines(tmp_path / "labels.txt") == names
    (tmp_path / "utf16.txt").write_bytes("\n".join(names).encode("utf-16"))
    assert read_lines(tmp_path / "utf16.txt") == names
    (tmp_path / "old_mac.txt").write_bytes("\r".join(names).encode())
    assert read_lines(tmp_path / "old_mac.txt") == names
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt' is not UTF-8 text.*0xe9"):
        read_labels(str(tmp_path / "latin1.txt"))


def test_predict_names_classes_exactly_from_a_bom_crlf_labels_file(tmp_path, capsys):
    import json

    import keras

    import keras_googlenet as kg
    from keras_googlenet_training.cli import predict as predict_cli

    keras.utils.set_random_seed(0)
    model = kg.GoogLeNet(variant="v1_bn", input_shape=(32, 32, 3), classes=2,
                         width_multiplier=0.25, include_aux=False)
    model.save(tmp_path / "model.keras")
    (tmp_path / "labels.txt").write_bytes("\ufeffcafé\r\n日本\r\n".encode())
    image = tmp_path / "x.png"
    _save(image, COLORS["red"], "RGB", "PNG", size=(40, 40))
    assert predict_cli.main([str(image), "--model", str(tmp_path / "model.keras"),
                             "--json"]) in (0, None)
    out = capsys.readouterr().out
    rows = json.loads(out)["results"][0]["predictions"]
    assert sorted(p["label"] for p in rows) == ["café", "日本"]
    assert "café" in out and "日本" in out  # the names themselves, not \u escapes
