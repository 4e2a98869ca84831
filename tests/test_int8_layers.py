"""The int8 export reports its worst-quantized layers and keeps chosen ones in float (#19).

`tf.lite.experimental.QuantizationDebugger` measures each quantized layer's error (RMSE in
units of its output scale) on the verification images; `int8_float_layers` is its denylist.
"""

import os
import re

import keras
import numpy as np
import pytest

from keras_googlenet import GoogLeNet
from keras_googlenet.export import export_model
from keras_googlenet.export.convert import INT8_REPORT_LAYERS

SIZE = 32
CLASSES = 4


def _tiny_model():
    keras.utils.set_random_seed(0)  # the same weights, hence the same worst layer, every run
    return GoogLeNet(input_shape=(SIZE, SIZE, 3), classes=CLASSES, width_multiplier=0.25)


def _images(count=16):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (count, SIZE, SIZE, 3)).astype("float32")
    return images, rng.integers(0, CLASSES, count)


def _layer_output_types(path, layer):
    """The types of the tensors an op of `layer` writes (a fused op's name lists it first)."""
    from ai_edge_litert.interpreter import Interpreter

    pattern = re.compile(rf"/{re.escape(layer)}(_\d+)?/")
    return {t["dtype"].__name__ for t in Interpreter(model_path=path).get_tensor_details()
            if pattern.search(t["name"].split(";")[0])}


@pytest.fixture(scope="module")
def int8_exports(tmp_path_factory):
    """(the model, the int8 export's result, the same with its worst layer in float)."""
    model, (images, labels) = _tiny_model(), _images()
    out = tmp_path_factory.mktemp("int8_layers")

    def export(directory, float_layers=None):
        # Random labels on an untrained model make the accuracy bound noise (a 16-image top-1
        # moves in 6.25 pt steps); that bound is test_export_accuracy's subject, not this one's.
        report = export_model(model, out / directory, ["tflite-int8"], calibration_data=images,
                              calibration_steps=len(images), int8_io="int8",
                              verification_data=(images, labels), int8_float_layers=float_layers,
                              max_accuracy_drop=100, verbose=False, strict=False)
        return report["tflite-int8"]

    plain = export("plain")
    return model, plain, export("float", [plain.int8_layers[0]["layer"]])


@pytest.mark.slow
def test_the_report_lists_the_worst_layers_first_by_names_the_user_can_pass(int8_exports):
    model, plain, _ = int8_exports
    layers = plain.int8_layers
    errors = [entry["rmse_per_scale"] for entry in layers]
    assert plain.ok and 3 <= len(layers) <= INT8_REPORT_LAYERS
    assert errors == sorted(errors, reverse=True) and errors[0] > 0
    names = [entry["layer"] for entry in layers]
    assert len(set(names)) == len(names)
    assert set(names) <= {layer.name for layer in model.layers}
    assert plain.card["int8_layer_errors"] == layers  # also in the card, hence the JSON
    assert "int8 layers by quantization error" in _summary(plain)


def _summary(result):
    from keras_googlenet.export.report import ExportReport

    return ExportReport(out_dir="", results=[result]).summary()


@pytest.mark.slow
def test_a_layer_kept_in_float_has_float32_tensors_in_the_tflite(int8_exports):
    _, plain, kept = int8_exports
    layer = plain.int8_layers[0]["layer"]
    assert kept.ok, kept.error
    assert _layer_output_types(plain.path, layer) == {"int8"}
    assert _layer_output_types(kept.path, layer) == {"float32"}
    assert kept.card["int8_float_layers"] == [layer]
    assert layer not in [entry["layer"] for entry in kept.int8_layers]  # no longer quantized
    # The other layers stay integer.
    other = plain.int8_layers[1]["layer"]
    assert _layer_output_types(kept.path, other) == {"int8"}


@pytest.mark.parametrize("layers,int8_io,message", [
    (["no_such_layer"], "int8", "`int8_float_layers` (--int8-float-layers) has unknown "
                                "layer(s) ['no_such_layer']; the model's layers are"),
    (["conv1"], "uint8", "needs int8_io 'int8' or 'float32'"),
    ([3], "int8", "`int8_float_layers` must be a list of layer names"),
])
def test_bad_int8_float_layers_are_refused_before_anything_is_written(tmp_path, layers,
                                                                      int8_io, message):
    images, _ = _images(2)
    with pytest.raises(ValueError) as refusal:
        export_model(_tiny_model(), tmp_path / "out", ["tflite-int8"], calibration_data=images,
                     int8_io=int8_io, int8_float_layers=layers, verbose=False)
    assert message in str(refusal.value)
    if layers == ["no_such_layer"]:
        assert "conv1" in str(refusal.value)  # a few valid names to choose from
    assert not os.path.exists(tmp_path / "out")


def test_int8_float_layers_without_the_int8_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="applies to the format 'tflite-int8'"):
        export_model(_tiny_model(), tmp_path / "out", ["tflite-fp32"],
                     int8_float_layers="conv1", verbose=False)


def test_the_cli_refuses_an_unknown_layer_with_exit_2(tmp_path, capsys):
    from keras_googlenet_training.cli.export import main

    _tiny_model().save(tmp_path / "m.keras")
    code = main([str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"), "--formats",
                 "tflite-int8", "--calibration-data", "digits", "--int8-io", "int8",
                 "--no-verify", "--int8-float-layers", "conv1,no_such_layer"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "--int8-float-layers) has unknown layer(s) ['no_such_layer']" in err
    assert not os.path.exists(tmp_path / "out")
