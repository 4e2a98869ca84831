"""Shared test data: sklearn's digits as small RGB images, and a training run on disk."""

import json
import os

import numpy as np
import tensorflow as tf

SIZE = 32
LABELS = [f"digit_{i}" for i in range(10)]


def digits_arrays(size=SIZE):
    """sklearn's 8x8 digits as RGB uint8 pixels upscaled to `size`, split 1400 / 397."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.repeat((digits.images / 16.0 * 255.0)[..., None], 3, axis=-1).astype("float32")
    x = tf.image.resize(x, (size, size)).numpy().round().clip(0, 255).astype("uint8")
    y = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    train, val = order[:1400], order[1400:]
    return (x[train], y[train]), (x[val], y[val])


def scale(pixels):
    return pixels.astype("float32") / 127.5 - 1.0


def write_run_dir(run_dir, model, variant, width_multiplier, labels=LABELS):
    os.makedirs(run_dir, exist_ok=True)
    model.save(os.path.join(run_dir, "model.keras"))
    config = {"model": {"variant": variant, "input_size": SIZE, "classes": len(labels),
                        "widths": None, "width_multiplier": width_multiplier,
                        "include_aux": False},
              "dataset": "digits", "data_dir": None}
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(run_dir, "labels.txt"), "w") as f:
        f.write("\n".join(labels) + "\n")
