"""GoogLeNet as KerasHub classes and presets (keras_googlenet.hub), with the real keras_hub.

Small networks (width 0.25, 32-64 px) keep this file fast; the torchvision parity test runs
the full-size network and is marked slow.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import _synthetic_torchvision as synthetic_torchvision
import keras
import keras_hub
import numpy as np
import pytest

from keras_googlenet import GoogLeNet
from keras_googlenet.__main__ import main as keras_googlenet_main
from keras_googlenet.googlenet import set_batch_norm_momentum
from keras_googlenet.hub import (
    PRESET_FILES,
    GoogLeNetBackbone,
    GoogLeNetImageClassifier,
    GoogLeNetImageClassifierPreprocessor,
    GoogLeNetImageConverter,
    check_preset,
)
from keras_googlenet.preprocessing import resize_pixels
from keras_googlenet.spec import VARIANTS
from keras_googlenet_training.cli.export import main as export_main

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZE = 32
WIDTH = 0.25
LABELS = [f"digit_{i}" for i in range(10)]


def _randomize_batch_norm(model, seed=0):
    """Moving statistics away from (0, 1), so that a BatchNorm mix-up would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0.0, 0.1, channels).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, channels).astype("float32"))


def _uint8_images(count, height, width, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), "uint8")


def _run(model, x):
    """An eager forward pass: no tf.function to trace, which costs more than these tiny nets."""
    out = model(x, training=False)
    if isinstance(out, dict):
        return {key: keras.ops.convert_to_numpy(value) for key, value in out.items()}
    return keras.ops.convert_to_numpy(out)


def _reference_inputs(images, size=SIZE):
    """Our own preprocessing: the evaluation crop + resize + [-1, 1] of runtime.py."""
    return np.stack([resize_pixels(image, (size, size)) for image in images])


@pytest.fixture(scope="module")
def source_model():
    """An untrained v1_bn whose BatchNorm statistics are those of digits, not (0, 1).

    Calibrated in one forward pass (momentum 0), so that its random features are
    normalised and a head trained on them learns: a stand-in for a trained run.
    """
    keras.utils.set_random_seed(0)
    model = GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=10,
                      width_multiplier=WIDTH)
    x, _ = _digits(classes=10, count=128)
    set_batch_norm_momentum(model, 0.0)
    model(_reference_inputs(x), training=True)
    set_batch_norm_momentum(model, 0.99)
    return model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, source_model):
    """A training run directory as googlenet-train leaves it (model, config, labels)."""
    path = tmp_path_factory.mktemp("run") / "digits-v1_bn-32px"
    path.mkdir()
    source_model.save(path / "model.keras")
    config = {"model": {"variant": "v1_bn", "input_size": SIZE, "classes": 10, "widths": None,
                        "width_multiplier": WIDTH, "include_aux": False},
              "dataset": "digits", "data_dir": None}
    (path / "config.json").write_text(json.dumps(config))
    (path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return path


@pytest.fixture(scope="module")
def preset(run_dir, tmp_path_factory):
    """The preset `googlenet-export RUN --formats keras-hub --out DIR` writes."""
    out = tmp_path_factory.mktemp("presets") / "googlenet_digits"
    assert export_main([str(run_dir), "--formats", "keras-hub", "--out", str(out)]) == 0
    return out


def _copy(preset, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(preset, target)
    return target


# --------------------------------------------------------------------------- the classes


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.slow
def test_backbone_is_googlenets_feature_extractor(variant):
    widths = {"4e": {"1x1": 200}} if variant == "factorized" else None
    reference = GoogLeNet(include_top=False, variant=variant, widths=widths,
                          width_multiplier=WIDTH, input_shape=(None, None, 3))
    backbone = GoogLeNetBackbone(variant=variant, widths=widths, width_multiplier=WIDTH)
    assert [layer.name for layer in backbone.layers] == [layer.name for layer in reference.layers]
    assert [w.path for w in backbone.weights] == [w.path for w in reference.weights]
    assert [w.shape for w in backbone.weights] == [w.shape for w in reference.weights]
    _randomize_batch_norm(reference)
    backbone.set_weights(reference.get_weights())
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_array_equal(_run(backbone, x), _run(reference, x))

    config = json.loads(json.dumps(backbone.get_config()))  # as config.json holds it
    restored = GoogLeNetBackbone.from_config(config)
    assert json.loads(json.dumps(restored.get_config())) == config
    assert config["variant"] == variant and config["width_multiplier"] == WIDTH


def test_pyramid_outputs_are_keyed_by_level_and_feed_a_keras_hub_segmenter():
    backbone = GoogLeNetBackbone(variant="v1", width_multiplier=WIDTH)
    assert list(backbone.pyramid_outputs) == ["P1", "P2", "P3", "P4", "P5"]
    pyramid = keras.Model(backbone.inputs, backbone.pyramid_outputs)
    x = np.zeros((1, 64, 64, 3), "float32")
    shapes = {level: out.shape[1:3] for level, out in _run(pyramid, x).items()}
    assert shapes == {f"P{n}": (64 // 2**n, 64 // 2**n) for n in range(1, 6)}
    # "P2" is what stage 3 reads (after LRN in v1); the deepest level is the backbone output.
    assert backbone.pyramid_outputs["P2"] is backbone.get_layer("norm2").output
    assert backbone.pyramid_outputs["P5"] is backbone.output

    segmenter = keras_hub.models.DeepLabV3Backbone(
        image_encoder=backbone, spatial_pyramid_pooling_key="P4", upsampling_size=4,
        dilation_rates=[1, 2], low_level_feature_key="P2", image_shape=(64, 64, 3))
    assert _run(segmenter, x).shape == (1, 64, 64, 256)


def test_image_converter_is_the_evaluation_transform():
    converter = GoogLeNetImageConverter(image_size=(SIZE, SIZE), variant="torchvision")
    images = _uint8_images(3, 45, 38)
    got = keras.ops.convert_to_numpy(converter(images))
    np.testing.assert_allclose(got, _reference_inputs(images), atol=1e-6)

    config = converter.get_config()
    assert {config["variant"], config["crop_fraction"]} == {"torchvision", 0.875}
    assert "scale" not in config  # derived from the variant, never stored twice
    restored = GoogLeNetImageConverter.from_config(json.loads(json.dumps(config)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(images)), got)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"image_size": 16}, r"`image_size` must be .* >= 32, .*; received image_size=16\.$"),
        ({"image_size": (224, 31)}, r">= 32, .*received image_size=\(224, 31\)\.$"),
        ({"image_size": "224"}, r"`image_size` must be \(height, width\)"),
        ({"variant": "v2"}, r"`variant` must be one of"),
        ({"crop_fraction": 0.0}, r"`crop_fraction` must be a number in \(0, 1\]"),
        ({"scale": 1 / 255}, r"sets \['scale'\] itself"),
    ],
)
def test_image_converter_rejects_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        GoogLeNetImageConverter(**kwargs)


@pytest.mark.parametrize(
    "image_shape, fragment",
    [
        ((16, 16, 3), r"at least 32x32 .*received image_shape=\(16, 16, 3\)"),
        ((None, 64), r"`image_shape` must be \(height, width, channels\)"),
        (224, r"`image_shape` must be \(height, width, channels\)"),
    ],
)
def test_backbone_rejects_a_bad_image_shape(image_shape, fragment):
    with pytest.raises(ValueError, match=fragment):
        GoogLeNetBackbone(image_shape=image_shape)


def test_classifier_is_keras_hubs_image_classifier_and_its_config_round_trips():
    backbone = GoogLeNetBackbone(variant="v1_bn", width_multiplier=WIDTH, dtype="float32")
    classifier = GoogLeNetImageClassifier(backbone=backbone, num_classes=3, dropout=0.4)
    assert [layer.name for layer in classifier.layers][-3:] == ["pooler", "output_dropout",
                                                                "predictions"]
    assert keras.saving.get_registered_name(type(classifier)) == \
        "keras_googlenet>GoogLeNetImageClassifier"
    config = json.loads(json.dumps(classifier.get_config()))  # as task.json holds it
    restored = GoogLeNetImageClassifier.from_config(json.loads(json.dumps(config)))
    assert type(restored.backbone) is GoogLeNetBackbone
    assert json.loads(json.dumps(restored.get_config())) == config
    assert (config["num_classes"], config["dropout"]) == (3, 0.4)
    for kwargs, fragment in (({"num_classes": 0}, "expected a positive integer"),
                             ({"num_classes": 2, "pooling": "flatten"}, "Unknown `pooling`"),
                             ({"num_classes": 2, "activation": "nope"}, "activation function")):
        with pytest.raises(ValueError, match=fragment):  # KerasHub's and Keras' own checks
            GoogLeNetImageClassifier(backbone=backbone, **kwargs)


# --------------------------------------------------------------------------- presets


@pytest.mark.slow
def test_export_cli_writes_a_complete_preset(preset, run_dir, source_model):
    assert sorted(os.listdir(preset)) == sorted(PRESET_FILES)
    metadata = check_preset(preset)
    assert metadata["variant"] == "v1_bn" and metadata["width_multiplier"] == WIDTH
    assert metadata["task_parameter_count"] == source_model.count_params()
    assert metadata["parameter_count"] == metadata["backbone_parameter_count"] \
        == source_model.count_params() - source_model.get_layer("predictions").count_params()
    assert metadata["source"]["run_dir"] == str(run_dir)
    assert metadata["source"]["dataset"] == "digits"
    assert metadata["labels"] == LABELS
    assert metadata["image_size"] == [SIZE, SIZE] and metadata["num_classes"] == 10
    assert metadata["tasks"] == ["ImageClassifier"]
    assert metadata["verification"]["max_abs_diff"] <= 1e-5
    names = {name: json.loads((preset / name).read_text())["registered_name"]
             for name in ("config.json", "task.json", "preprocessor.json", "image_converter.json")}
    assert names == {
        "config.json": "keras_googlenet>GoogLeNetBackbone",
        "task.json": "keras_googlenet>GoogLeNetImageClassifier",
        "preprocessor.json": "keras_googlenet>GoogLeNetImageClassifierPreprocessor",
        "image_converter.json": "keras_googlenet>GoogLeNetImageConverter",
    }


@pytest.mark.slow
def test_from_preset_predicts_like_googlenet(preset, source_model):
    classifier = keras_hub.models.ImageClassifier.from_preset(str(preset))
    assert type(classifier) is GoogLeNetImageClassifier
    assert type(classifier.preprocessor) is GoogLeNetImageClassifierPreprocessor
    assert type(classifier.preprocessor.image_converter) is GoogLeNetImageConverter
    assert classifier.get_layer("output_dropout").rate == 0.4  # GoogLeNet's, from the model
    images = _uint8_images(4, 41, 37)  # raw pixels: the preset crops, resizes and scales
    want = _run(source_model, _reference_inputs(images))
    got = classifier.predict(images, verbose=0)  # the task API: preprocessing inside
    assert np.abs(got - want).max() <= 1e-5
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, atol=1e-5)  # the run's softmax is kept

    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    assert type(backbone) is GoogLeNetBackbone
    features = keras.Model(source_model.input, source_model.get_layer("inception_5b").output)
    x = _reference_inputs(images)
    assert np.abs(_run(backbone, x) - _run(features, x)).max() <= 1e-5


def _digits(classes, count):
    """sklearn's 8x8 digits as raw RGB uint8 (the preset's converter resizes them)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = digits.target < classes
    x = np.repeat((digits.images[keep] / 16.0 * 255.0)[..., None], 3, axis=-1)
    return x[:count].round().astype("uint8"), digits.target[keep][:count].astype("int32")


@pytest.mark.slow
@pytest.mark.parametrize(
    "freeze_backbone",
    [True, False],  # both slow: the preset fixture, and tracing the full backward (~20 s)
    ids=["frozen", "trainable"],
)
def test_fine_tuning_through_the_task_api(preset, freeze_backbone):
    x, y = _digits(classes=5, count=300)
    keras.utils.set_random_seed(0)
    classifier = keras_hub.models.ImageClassifier.from_preset(str(preset), num_classes=5)
    # Another num_classes: the backbone comes from the preset, the head is new.
    assert classifier.output_shape == (None, 5)
    reference = keras_hub.models.Backbone.from_preset(str(preset))
    for ours, theirs in zip(classifier.backbone.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())

    classifier.backbone.trainable = not freeze_backbone
    classifier.compile(optimizer=keras.optimizers.Adam(1e-2))  # loss and metrics: "auto"
    backbone_before = [w.numpy().copy() for w in classifier.backbone.weights]
    head_before = classifier.get_layer("predictions").kernel.numpy().copy()
    history = classifier.fit(x, y, batch_size=32, epochs=3, verbose=0)

    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    assert history.history["sparse_categorical_accuracy"][-1] > 2 / 5  # twice chance
    assert not np.allclose(classifier.get_layer("predictions").kernel.numpy(), head_before)
    backbone_changed = any(not np.array_equal(w.numpy(), before)
                           for w, before in zip(classifier.backbone.weights, backbone_before,
                                                strict=True))
    assert backbone_changed is not freeze_backbone


@pytest.mark.slow
def test_torchvision_preset_gives_torchvision_logits(tmp_path):
    manifest = json.loads((ROOT / "tests" / "fixtures" / "torchvision_googlenet.json").read_text())
    state_npz = tmp_path / "googlenet-synthetic.npz"
    np.savez(state_npz, **synthetic_torchvision.synthetic_state_dict(manifest))
    with np.load(ROOT / "tests" / "fixtures" / "torchvision_googlenet.npz") as data:
        reference = {key: data[key] for key in data.files}

    out = tmp_path / "googlenet_imagenet"
    assert keras_googlenet_main(["convert-torchvision", str(state_npz), "--preset", str(out)]) == 0
    metadata = check_preset(out)
    assert metadata["source"]["kind"] == "torchvision" and metadata["labels"][0] == "tench"

    classifier = keras_hub.models.ImageClassifier.from_preset(str(out))
    # torchvision saw the 224 px images themselves; framed to 256 px, the preset's 87.5 %
    # central crop gives back exactly those pixels, and resizing 224 to 224 changes nothing.
    framed = np.pad(reference["images"], ((0, 0), (16, 16), (16, 16), (0, 0)))
    logits = classifier.predict(framed, verbose=0)
    assert np.abs(logits - reference["logits"]).max() < 1e-4
    np.testing.assert_array_equal(np.argsort(-logits, axis=-1)[:, :5], reference["top5"])


# --------------------------------------------------------------------------- bad input


@pytest.mark.slow
def test_missing_files_are_named(preset, tmp_path):
    broken = _copy(preset, tmp_path)
    (broken / "task.weights.h5").unlink()
    (broken / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks task\.weights\.h5, metadata\.json"):
        check_preset(broken)
    (broken / "model.weights.h5").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks model\.weights\.h5, task\.weights\.h5"):
        check_preset(broken)
    # KerasHub itself looks for the sharded form (model.weights.json) last, and names that.
    with pytest.raises(FileNotFoundError, match=r"doesn't exist in preset directory"):
        keras_hub.models.ImageClassifier.from_preset(str(broken))
    with pytest.raises(FileNotFoundError, match="preset directory not found"):
        check_preset(tmp_path / "nowhere")


def _snapshot(directory):
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


@pytest.mark.slow
def test_rewriting_a_preset_swaps_it_on_success_and_keeps_the_users_files(
        preset, source_model, tmp_path, monkeypatch):
    from keras_googlenet.hub import presets as presets_lib

    target = _copy(preset, tmp_path)
    (target / "notes.txt").write_text("keep me")
    before = _snapshot(target)
    # A real failure after the new preset is written: its verification misses the bound.
    monkeypatch.setattr(presets_lib, "VERIFY_MAX_ABS_DIFF", -1.0)
    with pytest.raises(ValueError, match="nothing was written"):
        presets_lib.write_preset(source_model, target)
    assert _snapshot(target) == before and sorted(os.listdir(tmp_path)) == ["copy"]
    monkeypatch.undo()
    presets_lib.write_preset(source_model, target, labels=list("abcdefghij"), verify=False)
    assert check_preset(target)["labels"] == list("abcdefghij")
    assert (target / "notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["copy"]  # no stage or backup left


@pytest.fixture(scope="module")
def resnet_preset(tmp_path_factory):
    path = tmp_path_factory.mktemp("resnet") / "resnet"
    keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block",
        use_pre_activation=False,
    ).save_to_preset(str(path))
    return path


@pytest.mark.slow
def test_another_architectures_files_are_named(preset, resnet_preset, tmp_path):
    with pytest.raises(ValueError, match="`ResNetBackbone` which is not a subclass of calling "
                                         "class `GoogLeNetBackbone`"):
        GoogLeNetBackbone.from_preset(str(resnet_preset))

    foreign_weights = _copy(preset, tmp_path, "foreign_weights")
    shutil.copy(resnet_preset / "model.weights.h5", foreign_weights / "model.weights.h5")
    with pytest.raises(ValueError, match=r"model\.weights\.h5 does not hold the weights of this "
                                         r"GoogLeNetBackbone \(variant='v1_bn', "
                                         r"width_multiplier=0\.25"):
        keras_hub.models.ImageClassifier.from_preset(str(foreign_weights))

    foreign_config = _copy(preset, tmp_path, "foreign_config")
    shutil.copy(resnet_preset / "config.json", foreign_config / "config.json")
    with pytest.raises(ValueError, match=r"config\.json of preset .* describes "
                                         r"'keras_hub>ResNetBackbone', not "
                                         r"'keras_googlenet>GoogLeNetBackbone'"):
        check_preset(foreign_config)

    mixed = _copy(preset, tmp_path, "mixed")
    config = json.loads((mixed / "config.json").read_text())
    config["config"]["width_multiplier"] = 0.5
    (mixed / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"task\.json's backbone has width_multiplier=0\.25 but "
                                         r"config\.json has width_multiplier=0\.5"):
        check_preset(mixed)


# --------------------------------------------------------------------------- registration


def _python(script, *args):
    """Start a fresh interpreter on `script` (the tests run two of them concurrently)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def fresh_processes(preset):
    """Loading in new interpreters: with `import keras_googlenet.hub`, and without it."""
    with_hub = _python("""
        import json, sys
        sys.modules["keras_googlenet_training"] = None  # loading must not need the training code
        import keras_googlenet
        assert "keras_hub" not in sys.modules, "import keras_googlenet imported keras_hub"
        sys.modules["keras_hub"] = None  # as if keras-hub were not installed
        try:
            import keras_googlenet.hub
        except ImportError as error:
            print(json.dumps({"without_keras_hub": str(error)}))
        del sys.modules["keras_hub"]
        import keras_hub
        import keras_googlenet.hub  # registers the classes
        classifier = keras_hub.models.ImageClassifier.from_preset(sys.argv[1])
        backbone = keras_hub.models.Backbone.from_preset(sys.argv[1])
        print(json.dumps({"classes": [type(classifier).__name__, type(backbone).__name__]}))
        """, preset)
    without_hub = _python("""
        import json, sys
        import keras_hub
        import keras_googlenet  # the core package alone registers nothing with KerasHub
        try:
            keras_hub.models.ImageClassifier.from_preset(sys.argv[1])
        except ValueError as error:
            print(json.dumps({"error": str(error)}))
        with open(sys.argv[1] + "/metadata.json") as f:
            print(json.dumps({"loading": json.load(f)["loading"]}))
        """, preset)
    results = {}
    for name, process in (("with_hub", with_hub), ("without_hub", without_hub)):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-3000:]
        results[name] = {}
        for line in stdout.splitlines():
            if line.startswith("{"):
                results[name].update(json.loads(line))
    return results


@pytest.mark.slow  # two fresh interpreters importing TensorFlow and KerasHub
def test_import_keras_googlenet_hub_registers_the_classes(fresh_processes):
    result = fresh_processes["with_hub"]
    assert "pip install 'keras-googlenet[hub]'" in result["without_keras_hub"]
    assert result["classes"] == ["GoogLeNetImageClassifier", "GoogLeNetBackbone"]


@pytest.mark.slow
def test_without_import_keras_googlenet_hub_the_error_names_the_class(fresh_processes):
    result = fresh_processes["without_hub"]
    assert "no class registered with Keras for keras_googlenet>GoogLeNetBackbone" \
        in result["error"]
    assert "`import keras_googlenet.hub`" in result["loading"]  # what the preset says to do


def test_a_preset_destination_through_a_link_or_under_a_file_is_named_for_what_it_is(tmp_path):
    from keras_googlenet.hub.presets import check_preset_destination

    (tmp_path / "link").symlink_to(tmp_path / "nowhere")  # dangling: not "a file"
    with pytest.raises(ValueError, match="is a symbolic link"):
        check_preset_destination(tmp_path / "link")
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ValueError, match="--preset"):
        check_preset_destination(tmp_path / "file" / "preset", flag="--preset")
    assert check_preset_destination(tmp_path / "new") == str(tmp_path / "new")
    assert (tmp_path / "file").read_text() == "mine" and not (tmp_path / "new").exists()
