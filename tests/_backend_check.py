"""Run by tests/test_backends.py under another Keras backend (`KERAS_BACKEND=jax`).

Reads what the TensorFlow backend wrote in `WORKDIR` (weights, inputs, its outputs) and
writes `WORKDIR/result.json`: the largest differences from TensorFlow's outputs, and the
losses of a short fit. The asserting is left to the test.
"""

import json
import os
import sys

import _synthetic_torchvision as synthetic_torchvision  # beside this script
import keras
import numpy as np

from keras_googlenet import (
    GoogLeNet,
    compile_googlenet,
    head_targets,
    inference_model,
    preprocess_input,
)
from keras_googlenet import weights as weights_lib


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, "float64") - np.asarray(b, "float64"))))


def main(workdir, fixtures):
    with open(os.path.join(workdir, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    result = {"backend": keras.backend.backend(), "builder": {}}
    for name, kwargs in cases.items():
        model = GoogLeNet(**kwargs)
        model.load_weights(os.path.join(workdir, f"{name}.weights.h5"))
        with np.load(os.path.join(workdir, f"{name}.npz")) as data:
            inputs = data["inputs"]
            expected = {k: data[k] for k in data.files if k != "inputs"}
        outputs = model.predict(inputs, verbose=0)
        result["builder"][name] = {
            head: {"diff": max_diff(outputs[head], want), "scale": float(np.abs(want).max())}
            for head, want in expected.items()
        }
        if name == "v1":  # inference_model and the .keras round trip
            deployed = inference_model(model)
            result["inference_model"] = max_diff(deployed.predict(inputs, verbose=0),
                                                 expected["main"])
            path = os.path.join(workdir, "v1_jax.keras")
            model.save(path)
            reloaded = keras.models.load_model(path)
            result["keras_round_trip"] = max(
                max_diff(reloaded.predict(inputs, verbose=0)[h], outputs[h]) for h in outputs)
        # Two training steps: LRN and BatchNorm (with its moving statistics) in training mode.
        compile_googlenet(model, optimizer=keras.optimizers.SGD(0.01))
        labels = head_targets(model, np.arange(len(inputs)) % kwargs["classes"])
        moving_means = [np.array(w) for w in model.weights if "moving_mean" in w.path]
        history = model.fit(inputs, labels, batch_size=2, epochs=1, verbose=0)
        if moving_means:
            after = [np.array(w) for w in model.weights if "moving_mean" in w.path]
            result["moving_mean_changed"] = max(map(max_diff, moving_means, after))
        result.setdefault("fit_losses", {})[name] = [float(v) for v in history.history["loss"]]

    # The torchvision port, against the logits torchvision computed (tests/test_weights.py).
    with open(os.path.join(fixtures, "torchvision_googlenet.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    with np.load(os.path.join(fixtures, "torchvision_googlenet.npz")) as data:
        reference = {k: data[k] for k in data.files}
    state = synthetic_torchvision.synthetic_state_dict(manifest)
    ported = weights_lib.from_torchvision(state, classifier_activation=None)
    logits = ported.predict(preprocess_input(reference["images"], variant="torchvision"),
                            verbose=0)
    result["torchvision_port"] = max_diff(logits, reference["logits"])

    with open(os.path.join(workdir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
