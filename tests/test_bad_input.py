"""The bad-input suite (#14): every bad invocation is one clear line, a known exit status,
no traceback, and nothing changed outside the run or export directory.

Each row runs a CLI's `main(argv)` in-process; almost all fail before any training or
conversion. Placeholders in the argv: {tmp} the test's directory, {model} a small saved
GoogLeNet (with labels), {nan_model} the same with NaN weights, {img} a PNG, {junk} a file
of random bytes.
"""

import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

import keras_googlenet as kg
from keras_googlenet.__main__ import main as package_main
from keras_googlenet.export import export_model
from keras_googlenet.runtime import load_image, load_predictor
from keras_googlenet_training.cli import export as export_cli
from keras_googlenet_training.cli import predict as predict_cli
from keras_googlenet_training.cli import train as train_cli
from keras_googlenet_training.cli import tune as tune_cli

CLIS = {"train": train_cli.main, "predict": predict_cli.main, "export": export_cli.main,
        "tune": tune_cli.main, "convert": package_main}  # convert: python -m keras_googlenet
SIZE = 32


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    keras.utils.set_random_seed(0)
    model = kg.GoogLeNet(variant="v1_bn", input_shape=(SIZE, SIZE, 3), classes=3,
                         width_multiplier=0.25)
    (root / "run").mkdir()
    model.save(root / "run" / "model.keras")
    (root / "run" / "labels.txt").write_text("a\nb\nc\n")
    for w in model.weights:  # what a diverged run used to leave behind
        w.assign(np.full(w.shape, np.nan, dtype="float32"))
    model.save(root / "nan.keras")
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(root / "img.png")
    (root / "junk.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    return root


@pytest.fixture
def no_variables(monkeypatch):
    """Any variable created fails the test at once: a refusal must come before the model
    is built (GoogLeNet(width_multiplier=100) used to eat all memory instead)."""
    def refuse(layer, *args, **kwargs):
        raise AssertionError(f"{layer.name} created a variable before the refusal")

    monkeypatch.setattr(keras.layers.Layer, "add_weight", refuse)


def _tree(root):
    """Every path under `root` with its size and mtime."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            state[os.path.relpath(path, root)] = (info.st_size if name in filenames else 0,
                                                 info.st_mtime_ns)
    return state


def _setup(tmp, assets, setup):
    """Builds the row's files; returns the placeholders."""
    values = {"tmp": str(tmp), "model": str(assets / "run" / "model.keras"),
              "nan_model": str(assets / "nan.keras"), "img": str(assets / "img.png"),
              "junk": str(assets / "junk.bin")}
    if setup == "danger":
        (tmp / "danger" / "precious").mkdir(parents=True)
        (tmp / "danger" / "precious" / "data.txt").write_text("keep me")
        (tmp / "danger" / "sub").mkdir()
    elif setup == "file":
        (tmp / "a_file").write_text("not a directory")
    elif setup == "junk_keras":
        (tmp / "bad.keras").write_bytes(np.random.default_rng(1).bytes(2048))
    elif setup == "truncated_keras":
        data = (assets / "run" / "model.keras").read_bytes()
        (tmp / "cut.keras").write_bytes(data[: len(data) // 2])
    elif setup == "junk_onnx":
        (tmp / "bad.onnx").write_bytes(b"\x08\x07garbage" * 100)
    elif setup == "junk_tflite":
        (tmp / "bad.tflite").write_bytes(np.random.default_rng(2).bytes(4096))
    elif setup == "junk_savedmodel":
        (tmp / "sm").mkdir()
        (tmp / "sm" / "saved_model.pb").write_bytes(np.random.default_rng(3).bytes(2048))
    elif setup == "corrupt_card":
        (tmp / "m").mkdir()
        (tmp / "m" / "model.keras").write_bytes((assets / "run" / "model.keras").read_bytes())
        (tmp / "m" / "model.keras.json").write_text("{not json")
    elif setup == "corrupt_config":
        (tmp / "run").mkdir()
        (tmp / "run" / "model.keras").write_bytes((assets / "run" / "model.keras").read_bytes())
        (tmp / "run" / "config.json").write_text('{"model": ')
    elif setup == "folder":
        (tmp / "empty_dataset").mkdir()
    elif setup == "bomb":  # 7 KB on disk, 60 megapixels: over the pixel budget
        Image.new("1", (10_000, 6_000)).save(tmp / "bomb.png", optimize=True)
    elif setup == "junk_state":
        (tmp / "junk.npz").write_bytes(np.random.default_rng(5).bytes(4096))
        (tmp / "junk.pth").write_bytes(np.random.default_rng(6).bytes(4096))
    elif setup == "symlink_out":
        (tmp / "real").mkdir()
        (tmp / "real" / "data.txt").write_text("keep me")
        (tmp / "link").symlink_to(tmp / "real", target_is_directory=True)
    elif setup == "search":  # a finished search (its files, as far as the checks look)
        _fake_search(tmp / "tuning")
    elif setup == "linked_project":
        (tmp / "elsewhere").mkdir()
        (tmp / "elsewhere" / "data.txt").write_text("keep me")
        (tmp / "tuning").mkdir()
        (tmp / "tuning" / "googlenet").symlink_to(tmp / "elsewhere")
    return values


def _fake_search(directory):
    import dataclasses

    from keras_googlenet_training.tune_config import TuneConfig

    project = directory / "googlenet"
    (project / "trial_0").mkdir(parents=True)
    (project / "trial_0" / "trial.json").write_text('{"status": "COMPLETED"}')
    (project / "results.md").write_text("| trial |\n")
    record = dataclasses.asdict(TuneConfig(directory=str(directory)).resolved())
    (project / "search.json").write_text(json.dumps(record))


TINY_TUNE = ("--max-trials 1 --epochs 1 --steps-per-epoch 1 --validation-steps 1 --no-aux "
             "--input-size 32 --variants v1 --width-multiplier 0.25 --stage-multipliers 0.25 "
             "--reduce-ratios 0.5")
# (id, cli, argv, setup, exit status, words the message must contain)
ROWS = [
    # -- googlenet-train: all fail before any training
    ("train-run-name-dotdot-overwrite", "train",
     "--output-dir {tmp}/danger/sub --run-name .. --overwrite", "danger", 2,
     ["run_name", "inside --output-dir"]),
    ("train-run-name-dotdot", "train", "--output-dir {tmp}/danger/sub --run-name ..", "danger",
     2, ["run_name"]),
    ("train-run-name-dot", "train", "--output-dir {tmp}/danger --run-name .", "danger", 2,
     ["run_name"]),
    ("train-run-name-slash", "train", "--output-dir {tmp} --run-name ../x", None, 2,
     ["run_name"]),
    ("train-run-name-a-b", "train", "--output-dir {tmp} --run-name a/b", None, 2,
     ["run_name"]),
    ("train-run-name-absolute", "train", "--output-dir {tmp}/out --run-name {tmp}/abs", None,
     2, ["run_name"]),
    ("train-run-dir-is-a-symlink", "train", "--output-dir {tmp} --run-name link --overwrite",
     "symlink_out", 2, ["run_name", "symbolic link"]),
    ("train-output-dir-is-a-file", "train", "--output-dir {tmp}/a_file", "file", 2,
     ["output_dir", "is a file"]),
    ("train-output-dir-under-a-file", "train", "--output-dir {tmp}/a_file/runs", "file", 2,
     ["output_dir", "is a file"]),
    ("train-bad-dataset-spec", "train", "--dataset csv:data.csv --output-dir {tmp}", None, 2,
     ["dataset"]),
    ("train-missing-folder", "train", "--dataset folder:{tmp}/nowhere --output-dir {tmp}",
     None, 2, ["folder", "does not exist"]),
    ("train-empty-folder", "train", "--dataset folder:{tmp}/empty_dataset --output-dir {tmp}",
     "folder", 2, ["at least two"]),
    ("train-missing-init-weights", "train", "--init-weights {tmp}/nope.keras --output-dir {tmp}",
     None, 2, ["init_weights", "not found"]),
    ("train-junk-init-weights", "train",
     "--init-weights {tmp}/bad.keras --input-size 33 --no-aux --width-multiplier 0.25 "
     "--output-dir {tmp}", "junk_keras", 2, ["init_weights", "not a valid .keras archive"]),
    ("train-epochs-0", "train", "--epochs 0 --output-dir {tmp}", None, 2, ["epochs"]),
    ("train-batch-size-negative", "train", "--batch-size -1 --output-dir {tmp}", None, 2,
     ["batch_size"]),
    ("train-input-size-too-small", "train", "--input-size 40 --output-dir {tmp}", None, 2,
     ["input_size", ">= 65"]),
    ("train-width-multiplier-huge", "train", "--width-multiplier 100 --output-dir {tmp}", None,
     2, ["width_multiplier", "parameters"]),
    ("train-width-multiplier-zero", "train", "--width-multiplier 0 --output-dir {tmp}", None, 2,
     ["width_multiplier"]),
    ("train-learning-rate-zero", "train", "--learning-rate 0 --output-dir {tmp}", None, 2,
     ["learning_rate"]),
    ("train-val-fraction", "train", "--val-fraction 1.5 --output-dir {tmp}", None, 2,
     ["val_fraction"]),
    ("train-tfds-unknown-version", "train", "--dataset tfds:mnist:9.9.9 --output-dir {tmp}",
     None, 2, ["dataset", "'9.9.9'", "versions available: 3.0.1"]),
    ("train-freeze-without-init", "train", "--freeze-backbone --output-dir {tmp}", None, 2,
     ["freeze_backbone"]),
    ("train-workers-0", "train", "--workers 0 --output-dir {tmp}", None, 2, ["--workers"]),
    ("train-bad-widths-json", "train", "--widths {{3a --output-dir {tmp}", None, 2,
     ["--widths"]),
    ("train-unknown-precision", "train", "--precision fp8 --output-dir {tmp}", None, 2,
     ["--precision"]),
    # -- googlenet-predict
    ("predict-missing-model", "predict", "{img} --model {tmp}/nope.keras", None, 2,
     ["model not found"]),
    ("predict-unknown-format", "predict", "{img} --model {junk}", None, 2,
     ["cannot tell the format"]),
    ("predict-dir-without-savedmodel", "predict", "{img} --model {tmp}", None, 2,
     ["saved_model.pb"]),
    ("predict-junk-onnx", "predict", "{img} --model {tmp}/bad.onnx", "junk_onnx", 2,
     ["bad.onnx", "not a valid ONNX model"]),
    ("predict-junk-tflite", "predict", "{img} --model {tmp}/bad.tflite", "junk_tflite", 2,
     ["bad.tflite", "not a valid TFLite model"]),
    ("predict-junk-savedmodel", "predict", "{img} --model {tmp}/sm", "junk_savedmodel", 2,
     ["/sm", "not a valid SavedModel"]),
    ("predict-junk-keras", "predict", "{img} --model {tmp}/bad.keras", "junk_keras", 2,
     ["bad.keras", "not a valid .keras archive"]),
    ("predict-truncated-keras", "predict", "{img} --model {tmp}/cut.keras", "truncated_keras",
     2, ["not a valid .keras archive"]),
    ("predict-corrupt-card", "predict", "{img} --model {tmp}/m/model.keras", "corrupt_card", 2,
     ["model.keras.json", "corrupt"]),
    ("predict-nan-model", "predict", "{img} --model {nan_model}", None, 2,
     ["non-finite", "NaN"]),
    ("predict-top-k-0", "predict", "{img} --model {model} --top-k 0", None, 2, ["--top-k"]),
    ("predict-batch-size-0", "predict", "{img} --model {model} --batch-size 0", None, 2,
     ["--batch-size"]),
    ("predict-top-k-negative", "predict", "{img} --model {model} --top-k -3", None, 2,
     ["--top-k", "positive int"]),
    ("predict-threads-0", "predict", "{img} --model {model} --threads 0", None, 2,
     ["--threads", "positive int"]),
    ("predict-image-over-pixel-budget", "predict", "{tmp}/bomb.png --model {model}", "bomb", 1,
     ["bomb.png", "10000x6000", "megapixel budget"]),
    ("predict-unreadable-image", "predict", "{junk} --model {model}", None, 1,
     ["cannot read image"]),
    # -- googlenet-export
    ("export-name-escapes", "export", "{model} --out {tmp}/out --name ../x --formats onnx",
     None, 2, ["name", "without a path"]),
    ("export-name-dotdot", "export", "{model} --out {tmp}/out --name .. --formats onnx", None,
     2, ["name"]),
    ("export-out-is-a-file", "export", "{model} --out {tmp}/a_file --formats onnx", "file", 2,
     ["out_dir", "is a file"]),
    ("export-missing-source", "export", "{tmp}/nope.keras --out {tmp}/out", None, 2,
     ["not found"]),
    ("export-junk-keras", "export", "{tmp}/bad.keras --out {tmp}/out --formats onnx",
     "junk_keras", 2, ["not a valid .keras archive"]),
    ("export-truncated-keras", "export", "{tmp}/cut.keras --out {tmp}/out --formats onnx",
     "truncated_keras", 2, ["not a valid .keras archive"]),
    ("export-corrupt-config", "export", "{tmp}/run --out {tmp}/out --formats onnx",
     "corrupt_config", 2, ["config.json", "corrupt"]),
    ("export-unknown-format", "export", "{model} --out {tmp}/out --formats jpeg", None, 2,
     ["formats"]),
    ("export-int8-without-calibration", "export", "{model} --out {tmp}/out --formats tflite-int8",
     None, 2, ["calibration"]),
    ("export-opset-too-low", "export", "{model} --out {tmp}/out --opset 5", None, 2,
     ["opset"]),
    ("export-out-is-a-symlink", "export", "{model} --out {tmp}/link --formats onnx",
     "symlink_out", 2, ["out_dir", "symbolic link"]),
    ("export-tflite-source", "export", "{tmp}/bad.tflite --out {tmp}/out --formats onnx",
     "junk_tflite", 2, ["bad.tflite", ".keras"]),
    # -- python -m keras_googlenet convert-torchvision
    ("convert-junk-npz", "convert", "convert-torchvision {tmp}/junk.npz {tmp}/o.weights.h5",
     "junk_state", 2, ["junk.npz", "not a NumPy '.npz'"]),
    ("convert-junk-pth", "convert", "convert-torchvision {tmp}/junk.pth {tmp}/o.weights.h5",
     "junk_state", 2, ["junk.pth"]),
    ("convert-out-dotdot", "convert", "convert-torchvision {tmp}/junk.npz {tmp}/sub/..",
     "junk_state", 2, ["`out`", "plain name"]),
    ("convert-preset-dotdot", "convert",
     "convert-torchvision {tmp}/junk.npz --preset {tmp}/sub/..", "junk_state", 2,
     ["`preset_dir`", "plain name"]),
    ("convert-out-under-a-file", "convert", "convert-torchvision {tmp}/sd.npz {tmp}/a_file/o.npz",
     "file", 2, ["a_file", "is a file"]),
    # -- googlenet-tune: nothing written, the saved search untouched (a tiny search where
    # all is well: code that accepts the row searches for seconds, then fails the asserts)
    *[(f"tune-project-name-{tag}{'-overwrite' if overwrite else ''}", "tune",
       f"{TINY_TUNE} --directory {{tmp}}/danger/sub --project-name {name}"
       f"{' --overwrite' * overwrite}", "danger", 2, ["project_name"])
      for tag, name in (("dotdot", ".."), ("dot", "."), ("slash", "a/b"),
                        ("absolute", "{tmp}/danger/precious"))
      for overwrite in (False, True)],
    ("tune-directory-is-a-file", "tune", TINY_TUNE + " --directory {tmp}/a_file", "file", 2,
     ["--directory", "is a file"]),
    ("tune-directory-under-a-file", "tune", TINY_TUNE + " --directory {tmp}/a_file/sub --overwrite",
     "file",
     2, ["--directory", "is a file"]),
    ("tune-project-is-a-file", "tune",
     TINY_TUNE + " --directory {tmp} --project-name a_file --overwrite", "file", 2,
     ["project_name", "is a file"]),
    ("tune-symlinked-project", "tune", TINY_TUNE + " --directory {tmp}/tuning --overwrite",
     "linked_project", 2, ["project_name", "symbolic link"]),
    ("tune-other-settings", "tune", "--directory {tmp}/tuning --epochs 5", "search", 2,
     ["other settings", "epochs", "--overwrite"]),
    *[(f"tune-{flag.strip('-')}{'-overwrite' if overwrite else ''}", "tune",
       f"{TINY_TUNE} --directory {{tmp}}/tuning {flag} {value}{' --overwrite' * overwrite}",
       "search", 2,
       [words])
      for flag, value, words in (
          ("--max-trials", "0", "max_trials"), ("--epochs", "0", "epochs"),
          ("--val-fraction", "1.5", "val_fraction"), ("--replicas", "0", "replicas"),
          ("--latency-threads", "0", "latency_threads"), ("--workers", "-1", "--workers"),
          ("--width-multiplier", "0", "width_multiplier"),
          ("--stage-multipliers", "0,1", "stage_multipliers"), ("--dropout", "1.5", "dropout"),
          ("--learning-rate", "0", "learning_rate"), ("--max-macs", "-5", "max_macs"),
          ("--input-size", "16", ">= 32"), ("--dataset", "csv:data.csv", "dataset"),
          ("--tuner", "grid", "--tuner"), ("--max-trials", "x", "--max-trials"),
          ("--batch-size", "100000", "batch_size"))
      for overwrite in (False, True)],
    # a new project: a refused value used to leave a search.json that then refused the
    # corrected command as "other settings"
    *[(f"tune-new-project-{flag.strip('-')}", "tune",
       f"{TINY_TUNE} --directory {{tmp}}/tuning {flag} {value}", None, 2, [words])
      for flag, value, words in (
          ("--dropout", "1.5", "dropout"), ("--max-macs", "-5", "max_macs"),
          ("--dataset", "csv:data.csv", "dataset"), ("--batch-size", "100000", "batch_size"))],
]


@pytest.mark.parametrize("cli, argv, setup, status, words",
                         [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_invocation(tmp_path, assets, capsys, request, cli, argv, setup, status, words):
    values = _setup(tmp_path, assets, setup)
    if cli == "train" and "--init-weights" not in argv:  # refused before any model is built
        request.getfixturevalue("no_variables")
    args = [a.format(**values) for a in argv.split()]
    before, assets_before = _tree(tmp_path), _tree(assets)
    try:
        code = CLIS[cli](args)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == status, err
    for word in words:
        assert word in err, err
    assert "Traceback" not in err
    # No refusal suggests loading a file unsafely (NumPy's and torch's own messages do).
    assert not any(word in err for word in ("allow_pickle", "weights_only", "unsafe")), err
    message = [line for line in err.splitlines() if "error" in line or "cannot" in line]
    assert message and all(len(line) < 600 for line in message), err
    # Nothing written or deleted anywhere: these fail before any output.
    assert _tree(tmp_path) == before
    assert _tree(assets) == assets_before


@pytest.mark.parametrize("make, words", [
    (lambda: kg.GoogLeNet(include_top="no"), ["include_top", "True or False"]),
    (lambda: kg.GoogLeNet(include_aux="yes"), ["include_aux", "True or False"]),
    (lambda: kg.GoogLeNet(width_multiplier=100), ["width_multiplier", "parameters"]),
    (lambda: kg.GoogLeNet(widths={"4e": {"1x1": 20000}, "5a": {"1x1": 20000}}),
     ["widths", "parameters"]),
    (lambda: load_predictor(None), ["`path`"]),
    (lambda: export_model(42, "out"), ["`source`"]),
    (lambda: load_image(np.full((8, 8, 3), 0.5, "float32"), (8, 8)), ["[0, 1]", "255"]),
    (lambda: load_image(np.full((8, 8, 3), -0.5, "float32"), (8, 8)), ["preprocessed"]),
], ids=["include_top-string", "include_aux-string", "width_multiplier-100", "widths-huge",
        "load_predictor-None", "export_model-42", "float-0-1-image", "preprocessed-image"])
def test_bad_api_arguments_raise_a_value_error_naming_them(no_variables, make, words):
    started = time.perf_counter()
    with pytest.raises(ValueError) as caught:
        make()
    for word in words:
        assert word in str(caught.value)
    assert time.perf_counter() - started < 5  # refused before any variable was created


def test_only_our_own_refusals_are_bad_arguments(tmp_path, capsys):
    """A ValueError from inside another library is an internal error: one line with its
    type, the traceback in a log file in the given directory, exit 1 (not 2)."""
    from keras_googlenet import errors

    with pytest.raises(ValueError) as ours:
        kg.GoogLeNet(include_top="no")
    with pytest.raises(ValueError) as foreign:
        np.zeros(-1)
    assert errors.is_refusal(ours.value) and not errors.is_refusal(foreign.value)
    assert errors.refuse_or_report("googlenet-export", foreign.value, log_dir=str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "internal error: ValueError" in err, err
    logs = list(tmp_path.glob("googlenet-export-error-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text() and str(logs[0]) in err


def test_convert_torchvision_refuses_a_cache_directory_that_is_a_file(tmp_path, monkeypatch,
                                                                     capsys):
    (tmp_path / "home").write_text("not a directory")
    monkeypatch.setenv("KERAS_GOOGLENET_HOME", str(tmp_path / "home"))
    before = _tree(tmp_path)
    assert package_main(["convert-torchvision", str(tmp_path / "sd.npz")]) == 2
    err = capsys.readouterr().err
    assert "$KERAS_GOOGLENET_HOME" in err and "is a file" in err and "Traceback" not in err
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("destination", [[], ["--preset", "preset"]])
def test_convert_torchvision_aux_needs_an_out_path_and_no_preset(tmp_path, capsys, destination):
    destination = [str(tmp_path / d) if d == "preset" else d for d in destination]
    argv = ["convert-torchvision", str(tmp_path / "sd.npz"), "--aux", *destination]
    assert package_main(argv) == 2
    err = capsys.readouterr().err
    assert "--aux needs an OUT path and no --preset" in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # refused before anything was read or written


def test_run_name_dotdot_leaves_the_parent_and_its_files_alone(tmp_path, capsys):
    precious = tmp_path / "danger" / "precious"
    precious.mkdir(parents=True)
    (precious / "data.txt").write_text("keep me")
    # A tiny run: code that accepts '..' trains in seconds and then fails the asserts.
    assert train_cli.main(["--input-size", "33", "--no-aux", "--width-multiplier", "0.25",
                           "--batch-size", "16", "--epochs", "1", "--steps-per-epoch", "1",
                           "--output-dir", str(tmp_path / "danger" / "sub"), "--run-name", "..",
                           "--overwrite"]) == 2
    assert (precious / "data.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path / "danger")) == ["precious"]


def test_classify_refuses_float_images_in_0_1(assets):
    predictor = load_predictor(assets / "run" / "model.keras")
    pixels = np.random.default_rng(0).random((SIZE, SIZE, 3)).astype("float32")
    with pytest.raises(ValueError, match=r"multiply by 255"):
        predictor.classify([pixels])
    assert len(predictor.classify([pixels * 255.0])[0]) == 3  # as documented: 0-255 pixels


def _gradients():
    """A full-range 16-bit gradient and its 8-bit twin."""
    gradient = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    return gradient, np.round(gradient / 257.0).astype(np.uint8)


def test_16_bit_images_are_scaled_not_clipped_for_predict(tmp_path):
    gradient, twin = _gradients()
    Image.fromarray(gradient).save(tmp_path / "g16.png")
    Image.fromarray(twin).save(tmp_path / "g8.png")
    # PIL decodes; convert("RGB") used to turn 99.6 % of this white
    np.testing.assert_allclose(load_image(tmp_path / "g16.png", (32, 32)),
                               load_image(tmp_path / "g8.png", (32, 32)), atol=1e-6)


def test_16_bit_images_are_scaled_not_clipped_in_training_data(tmp_path):
    from keras_googlenet_training import data as data_lib

    gradient, twin = _gradients()
    for label, name in enumerate(("a", "b")):  # a 16-bit TIFF goes through PIL too
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for i in range(3):
            image = gradient if label == 0 else gradient[::-1]
            Image.fromarray(image).save(folder / f"{i}.tiff")
    splits = data_lib.load_dataset(f"folder:{tmp_path / 'data'}", val_fraction=0.34)
    assert not splits.skipped
    for pixels, label in splits.train.take(2):
        expected = twin if int(label) == 0 else twin[::-1]
        np.testing.assert_array_equal(pixels.numpy()[..., 0], expected)


@pytest.mark.slow
def test_plain_keras_loads_saved_models_without_the_package(tmp_path):
    """`inference.keras` / `model.keras` of every BatchNorm variant, saved as the pipelines save
    them (`run_dir.save_keras`), load in a process that never imports keras_googlenet (the
    paper v1's LRN still needs it: docs say so)."""
    from keras_googlenet_training.run_dir import save_keras

    training = kg.GoogLeNet(variant="v1_bn", include_aux=True, input_shape=(65, 65, 3),
                            classes=3, width_multiplier=0.25)
    kg.compile_googlenet(training)  # model.keras: the compiled training model, aux heads
    save_keras(training, str(tmp_path / "model.keras"))
    paths = [str(tmp_path / "model.keras")]
    for variant in ("v1_bn", "torchvision", "factorized"):
        model = kg.GoogLeNet(variant=variant, input_shape=(SIZE, SIZE, 3), classes=3,
                             width_multiplier=0.25)
        save_keras(kg.float32_inference_model(model), str(tmp_path / f"{variant}_inference.keras"))
        paths.append(str(tmp_path / f"{variant}_inference.keras"))
    script = (
        "import sys, keras\n"
        "for p in sys.argv[1:]:\n"
        "    keras.saving.load_model(p, safe_mode=True, compile=False)\n"
        "assert 'keras_googlenet' not in sys.modules\n"
        "print('loaded', len(sys.argv) - 1)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True,
                            text=True, timeout=180, cwd=tmp_path,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded 4" in result.stdout


def _mount_tmpfs(path, size, read_only=False):
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    options = f"size={size}" + (",ro" if read_only else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")


@pytest.fixture(scope="module")
def read_only_dir(tmp_path_factory):
    """A real read-only file system: as root, chmod would not stop the writes."""
    path = tmp_path_factory.mktemp("ro") / "mnt"
    _mount_tmpfs(path, "1m", read_only=True)
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.mark.parametrize("cli, argv, named", [
    ("export", "{model} --out {ro} --formats onnx", "{ro}"),
    ("export", "{model} --out {ro}/exports --formats onnx", "{ro}/exports"),
    ("train", "--output-dir {ro} --run-name r", "{ro}"),
    ("train", "--output-dir {ro}/runs", "{ro}/runs"),
], ids=["export-out-read-only", "export-out-under-read-only", "train-output-dir-read-only",
        "train-output-dir-under-read-only"])
def test_read_only_destination_is_one_clear_line(read_only_dir, assets, capsys, request, cli,
                                                 argv, named):
    """Used to be exit 1: a per-format OSError for export, a message after the data was
    loaded and the model built for train."""
    values = {"ro": str(read_only_dir), "model": str(assets / "run" / "model.keras")}
    if cli == "train":  # refused before any data or model
        request.getfixturevalue("no_variables")
    assets_before = _tree(assets)
    code = CLIS[cli]([a.format(**values) for a in argv.split()])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "read-only file system" in err, err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and named.format(**values) in lines[0], err
    assert os.listdir(read_only_dir) == [] and _tree(assets) == assets_before


@pytest.mark.slow
def test_disk_full_during_training_is_a_clear_error(tmp_path):
    """A real 1 MB file system: config.json fits, the first epoch's backup does not."""
    full = tmp_path / "full"
    _mount_tmpfs(full, "1m")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "keras_googlenet_training.cli.train", "--input-size", "33",
             "--no-aux",
             "--width-multiplier", "0.25", "--batch-size", "16", "--epochs", "2",
             "--steps-per-epoch", "1", "--output-dir", str(full), "--run-name", "r"],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert result.returncode == 2, result.stderr[-3000:]  # not 139 (segfault)
        assert "no space left on" in result.stderr and "Traceback" not in result.stderr
        files = [f for _, _, names in os.walk(full) for f in names]
        assert "metrics.json" not in files
        assert not [f for f in files if f.startswith(".tmp-")]  # no half-written file
        assert json.loads((full / "r" / "config.json").read_text())["run_name"] == "r"
    finally:
        subprocess.run(["umount", str(full)], check=False)
