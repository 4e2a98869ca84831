"""The model library on another Keras 3 backend: JAX gives TensorFlow's outputs.

The test process runs the TensorFlow backend; it writes weights, inputs and its outputs,
and `tests/_backend_check.py` reruns them under `KERAS_BACKEND=jax` in a subprocess. The
PyTorch backend is not tested here (its wheel is several GB).
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from _processes import quick_xla_env

from keras_googlenet import GoogLeNet

ROOT = pathlib.Path(__file__).resolve().parents[1]
# float32 rounding, relative to the size of the outputs compared.
RELATIVE_TOLERANCE = 1e-4
PORT_TOLERANCE = 1e-4  # as in tests/test_weights.py
CASES = {
    # the paper (conv bias, LRN) and BatchNorm, both with aux heads, at a small size
    "v1": dict(variant="v1", include_aux=True, input_shape=(96, 96, 3), classes=7,
               width_multiplier=0.25, classifier_activation=None),
    "v1_bn": dict(variant="v1_bn", include_aux=True, input_shape=(96, 96, 3), classes=7,
                  width_multiplier=0.25, classifier_activation=None),
}


def _randomize(model, rng):
    """Weights that make every layer matter (BN statistics far from 0 and 1)."""
    for weight in model.weights:
        shape = tuple(weight.shape)
        if "moving_variance" in weight.path:
            value = rng.uniform(0.5, 2.0, shape)
        elif "moving_mean" in weight.path or "beta" in weight.path:
            value = rng.normal(0.0, 0.2, shape)
        elif "gamma" in weight.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        weight.assign(value.astype("float32"))


@pytest.fixture(scope="module")
def jax_result(tmp_path_factory):
    pytest.importorskip("jax")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("compares against the TensorFlow backend")
    workdir = tmp_path_factory.mktemp("backends")
    rng = np.random.default_rng(0)
    with open(workdir / "cases.json", "w", encoding="utf-8") as f:
        json.dump(CASES, f)
    for name, kwargs in CASES.items():
        model = GoogLeNet(**kwargs)
        _randomize(model, rng)
        model.save_weights(workdir / f"{name}.weights.h5")
        inputs = rng.uniform(-1, 1, (4, *kwargs["input_shape"])).astype("float32")
        outputs = model.predict(inputs, verbose=0)
        np.savez(workdir / f"{name}.npz", inputs=inputs, **outputs)
    env = quick_xla_env({**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
                         "TF_CPP_MIN_LOG_LEVEL": "3"})
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "_backend_check.py"), str(workdir),
         str(ROOT / "tests" / "fixtures")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    with open(workdir / "result.json", encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.slow
def test_jax_builds_the_same_network_as_tensorflow(jax_result):
    assert jax_result["backend"] == "jax"
    for name in CASES:  # v1: LRN through keras.ops; v1_bn: Keras' BatchNormalization
        for head, compared in jax_result["builder"][name].items():
            assert compared["scale"] > 0.1, (name, head)  # not a degenerate output
            assert compared["diff"] <= RELATIVE_TOLERANCE * compared["scale"], (name, head)


@pytest.mark.slow
def test_jax_inference_model_and_keras_round_trip(jax_result):
    scale = jax_result["builder"]["v1"]["main"]["scale"]
    assert jax_result["inference_model"] <= RELATIVE_TOLERANCE * scale
    assert jax_result["keras_round_trip"] <= 1e-6 * max(scale, 1.0)


@pytest.mark.slow
def test_jax_torchvision_port_gives_torchvision_logits(jax_result):
    assert jax_result["torchvision_port"] < PORT_TOLERANCE


@pytest.mark.slow
def test_jax_trains_with_compile_googlenet(jax_result):
    for name in CASES:
        losses = jax_result["fit_losses"][name]
        assert losses and np.all(np.isfinite(losses)), name
    assert jax_result["moving_mean_changed"] > 0  # v1_bn's BatchNorm statistics moved
