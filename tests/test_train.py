"""The trainer end to end: run directory, Ctrl-C, SIGTERM and SIGKILL resumes (exact),
`--overwrite` swaps, one trainer per run directory, replicas, transfer, errors.

Runs use small inputs, a quarter-width network and a few steps; anything that needs a
fresh TensorFlow (logical CPU devices, SIGKILL) runs `googlenet-train` in a subprocess.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_googlenet as kg
from keras_googlenet_training import run_dir as run_dir_lib
from keras_googlenet_training.cli.train import main
from keras_googlenet_training.optimization import ema_momentum_for
from keras_googlenet_training.precision import select_precision
from keras_googlenet_training.train import train
from keras_googlenet_training.train_config import TrainConfig

SMALL = ["--input-size", "65", "--width-multiplier", "0.25", "--batch-size", "16"]
RUN_FILES = {"model.keras", "inference.keras", "history.csv", "metrics.json", "config.json",
             "labels.txt", "curves.png", "best.weights.h5"}


TRAIN_COMMAND = [sys.executable, "-m", "keras_googlenet_training.cli.train"]
QUIET_TF = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cli(*args, timeout=300):
    return subprocess.run([*TRAIN_COMMAND, *args], capture_output=True, text=True,
                          timeout=timeout, env=QUIET_TF)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    code = main([*SMALL, "--epochs", "2", "--steps-per-epoch", "4", "--output-dir", str(out),
                 "--run-name", "smoke"])
    assert code == 0
    return out / "smoke"


@pytest.mark.slow
def test_cli_writes_a_complete_run_directory(finished_run):
    assert RUN_FILES <= set(os.listdir(finished_run))
    assert not any(name.startswith(".tmp-") for name in os.listdir(finished_run))
    assert not (finished_run / "backup").exists()  # removed once training finished
    assert (finished_run / "logs").is_dir()  # TensorBoard
    metrics = json.loads((finished_run / "metrics.json").read_text())
    for key in ("final_val_main_accuracy", "best_val_main_accuracy", "epochs", "global_batch",
                "precision", "replicas", "images_per_second", "wall_time_seconds"):
        assert metrics[key] is not None, key
    assert metrics["epochs_completed"] == 2 and metrics["total_steps"] == 8
    assert metrics["global_batch"] == 16 and metrics["replicas"] == 1
    assert metrics["precision"] == select_precision("auto")
    assert 0 <= metrics["final_val_main_accuracy"] <= 1
    config = json.loads((finished_run / "config.json").read_text())
    assert config["model"]["variant"] == "v1_bn" and config["model"]["input_size"] == 65
    assert config["class_names"] == [str(i) for i in range(10)]
    assert (finished_run / "labels.txt").read_text().split() == config["class_names"]
    history = run_dir_lib.read_history(finished_run / "history.csv")
    for key in ("main_loss", "aux1_loss", "aux2_accuracy", "val_main_accuracy"):
        assert len(history[key]) == 2, key
    assert (finished_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_run_models_load_and_the_inference_model_is_float32_single_output(finished_run):
    training_model = keras.models.load_model(finished_run / "model.keras")
    assert set(training_model.output) == {"main", "aux1", "aux2"}
    inference = keras.models.load_model(finished_run / "inference.keras")
    assert {layer.dtype_policy.name for layer in inference.layers} == {"float32"}
    assert not any(layer.name.startswith("aux") for layer in inference.layers)
    x = np.random.default_rng(0).random((2, 65, 65, 3)).astype("float32")
    np.testing.assert_allclose(inference.predict(x, verbose=0),
                               training_model.predict(x, verbose=0)["main"], atol=3e-2)


@pytest.mark.slow
def test_a_finished_run_is_not_overwritten_unless_asked(finished_run, capsys):
    before = (finished_run / "metrics.json").read_text()
    code = main([*SMALL, "--epochs", "2", "--steps-per-epoch", "4",
                 "--output-dir", str(finished_run.parent), "--run-name", "smoke"])
    assert code == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (finished_run / "metrics.json").read_text() == before


@pytest.mark.slow
def test_two_replica_mirrored_training_has_finite_decreasing_loss(tmp_path):
    # float32 on every CPU kind: "auto" picks bf16 where the CPU has it, and 18 steps of
    # bf16 did not always bring the loss down (AVX-512 EPYC, 2026-12-02).
    result = _cli(*SMALL, "--replicas", "2", "--batch-size", "8", "--epochs", "3",
                  "--steps-per-epoch", "6", "--no-ema", "--learning-rate", "3e-3",
                  "--precision", "float32",
                  "--output-dir", str(tmp_path), "--run-name", "r2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s) x 8 = global batch 16" in result.stdout
    assert "img/s" in result.stdout  # the per-epoch progress line
    metrics = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["global_batch"] == 16
    loss = run_dir_lib.read_history(tmp_path / "r2" / "history.csv")["loss"]
    assert all(np.isfinite(loss)) and loss[-1] < loss[0]


@pytest.mark.slow
def test_transfer_learning_keeps_frozen_batchnorm_statistics(tmp_path):
    source = kg.GoogLeNet(variant="v1_bn", include_aux=True, classes=5, input_shape=(65, 65, 3),
                          width_multiplier=0.25)
    rng = np.random.default_rng(0)
    for layer in source.layers:  # non-trivial statistics, so a reset would show
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, size=layer.moving_variance.shape))
    source_path = tmp_path / "source.keras"
    source.save(source_path)

    result = train(TrainConfig(
        input_size=65, width_multiplier=0.25, batch_size=16, epochs=1, steps_per_epoch=3,
        init_weights=str(source_path), freeze_backbone=True, output_dir=str(tmp_path),
        run_name="frozen",
    ), log=lambda *_: None)
    model = result.model
    for name in ("conv1_bn", "inception_4e_5x5_bn", "aux1_proj_bn"):
        if name.startswith("aux"):
            continue  # heads train
        for a, b in zip(model.get_layer(name).weights, source.get_layer(name).weights,
                        strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(model.get_layer("inception_5b_1x1_conv").kernel.numpy(),
                                  source.get_layer("inception_5b_1x1_conv").kernel.numpy())
    assert model.get_layer("predictions").units == 10  # new head for digits


@pytest.mark.slow
def test_unfreeze_after_fine_tunes_the_backbone(tmp_path):
    source = kg.GoogLeNet(variant="v1_bn", include_aux=False, classes=3, input_shape=(65, 65, 3),
                          width_multiplier=0.25)
    source_path = tmp_path / "source.keras"
    source.save(source_path)
    result = train(TrainConfig(
        input_size=65, width_multiplier=0.25, batch_size=16, epochs=2, steps_per_epoch=2,
        aux=False, ema=False, init_weights=str(source_path), freeze_backbone=True,
        unfreeze_after=1, output_dir=str(tmp_path), run_name="thaw",
    ), log=lambda *_: None)
    assert result.metrics["total_steps"] == 4
    changed = result.model.get_layer("conv1_conv").kernel.numpy()
    assert not np.array_equal(changed, source.get_layer("conv1_conv").kernel.numpy())


@pytest.mark.slow
def test_a_diverged_run_never_finishes_and_restarts_with_new_settings(tmp_path, capsys):
    """#14: the NaN epoch was backed up, reruns "resumed" it and the third one exited 0
    with NaN model.keras and metrics.json."""
    from keras_googlenet_training.callbacks import nonfinite_variables

    args = ["--input-size", "33", "--no-aux", "--width-multiplier", "0.25", "--batch-size",
            "16", "--epochs", "2", "--steps-per-epoch", "2", "--no-ema", "--precision",
            "float32", "--optimizer", "sgd", "--output-dir", str(tmp_path), "--run-name", "nan"]
    run = tmp_path / "nan"
    probe = kg.GoogLeNet(variant="v1_bn", input_shape=(33, 33, 3), classes=10,
                         width_multiplier=0.25)
    for attempt in range(3):
        assert main([*args, "--learning-rate", "1e30"]) == 3, attempt
        err = capsys.readouterr().err
        # what is on disk first: the data loss this guards against
        assert not (run / "metrics.json").exists() and not (run / "model.keras").exists()
        for dirpath, _, names in os.walk(run):
            for name in names:
                if name.endswith(".weights.h5"):  # backups and checkpoints: all finite
                    probe.load_weights(os.path.join(dirpath, name))
                    assert not nonfinite_variables(probe), (attempt, name)
        assert "Training diverged" in err and "--learning-rate" in err
        assert "--precision float32" not in err  # already set: not advised
        assert "Traceback" not in err
    # the advice is doable: a lower learning rate under the same name starts over
    assert main([*args, "--learning-rate", "1e-3"]) == 0
    assert "starting over" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["total_steps"] == 4 and np.isfinite(metrics["final_val_loss"])
    assert not (run / "diverged.json").exists()


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"epochs": 0}, "`epochs` must be a positive int"),
        ({"batch_size": -1}, "`batch_size` must be a positive int"),
        ({"precision": "fp8"}, "`precision` must be one of"),
        ({"optimizer": "lion"}, "`optimizer` must be one of"),
        ({"schedule": "step"}, "`schedule` must be one of"),
        ({"variant": "v2"}, "`variant` must be one of"),
        ({"input_size": 40}, "`input_size` must be >= 65"),
        ({"learning_rate": 0}, "`learning_rate` must be a positive number"),
        ({"label_smoothing": 1.5}, "`label_smoothing` must be a rate in \\[0, 1\\)"),
        ({"freeze_backbone": True}, "`freeze_backbone` needs `init_weights`"),
        ({"init_weights": "nowhere.keras"}, "`init_weights` not found"),
        ({"run_name": "a/b"}, "`run_name` must be"),
        ({"run_name": ".."}, "`run_name` must be"),
        ({"run_name": "."}, "`run_name` must be"),
        ({"run_name": "/abs"}, "`run_name` must be"),
        ({"widths": {"3a": (1,)}}, "six positive ints"),
        ({"replicas": 0}, "`replicas` must be a positive int"),
    ],
)
def test_bad_training_arguments_raise_clear_errors(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        TrainConfig(**kwargs).resolved()


@pytest.mark.slow
def test_cli_reports_bad_arguments_without_a_traceback(tmp_path):
    result = _cli("--dataset", "csv:data.csv", "--output-dir", str(tmp_path), timeout=120)
    assert result.returncode == 2
    assert "dataset" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "gpus, flags, expected",
    [
        ([(8, 0)], set(), "mixed_float16"),
        ([(8, 0), (6, 1)], set(), "float32"),
        ([], {"avx512f", "avx512_bf16"}, "mixed_bfloat16"),
        ([], {"amx_bf16"}, "mixed_bfloat16"),
        ([], {"avx2"}, "float32"),
    ],
)
def test_auto_precision_follows_the_hardware(gpus, flags, expected):
    assert select_precision("auto", gpu_capabilities=gpus, flags=flags) == expected


def test_explicit_precision_wins_and_bad_values_are_rejected():
    assert select_precision("float32", gpu_capabilities=[(8, 0)]) == "float32"
    with pytest.raises(ValueError, match="`precision` must be one of"):
        select_precision("bf16")


def test_ema_momentum_averages_the_last_five_percent_of_steps():
    assert ema_momentum_for(176) == pytest.approx(0.9)  # short runs: at least 10 steps
    assert ema_momentum_for(100_000) == pytest.approx(1 - 1 / 5000)
    assert ema_momentum_for(10**9) == pytest.approx(0.9999)


def test_atomic_writes_leave_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    run_dir_lib.write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError), run_dir_lib.atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("crash while writing")
    assert json.loads(target.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_launchers_pass_on_every_option_but_their_own():
    from keras_googlenet_training.cli import drop_options

    argv = ["--workers", "2", "--epochs", "3", "--workers=4", "--overwrite", "--seed", "1"]
    assert drop_options(argv, with_value=("--workers",)) == [
        "--epochs", "3", "--overwrite", "--seed", "1"]
    assert drop_options(argv, with_value=("--workers",), flags=("--overwrite",)) == [
        "--epochs", "3", "--seed", "1"]


def test_learning_rate_schedules():
    from keras_googlenet_training.optimization import learning_rate_schedule as _learning_rate

    paper = _learning_rate(TrainConfig(schedule="paper"), steps_per_epoch=10, epochs=40,
                           base_lr=0.1)
    assert float(paper(79)) == pytest.approx(0.1)  # unchanged through epoch 8
    assert float(paper(80)) == pytest.approx(0.096)  # then x0.96 every 8 epochs
    assert float(paper(160)) == pytest.approx(0.1 * 0.96**2)
    cosine = _learning_rate(TrainConfig(warmup_epochs=1.0), steps_per_epoch=10, epochs=5,
                            base_lr=0.1)
    assert float(cosine(0)) == pytest.approx(0.0)
    assert float(cosine(10)) == pytest.approx(0.1)  # warm-up ends at the peak
    assert float(cosine(49)) < 0.01  # decays towards zero by the end
    assert _learning_rate(TrainConfig(schedule="constant"), 10, 5, 0.1) == 0.1


def test_epoch_backup_resumes_fit_and_a_later_fit_keeps_its_own_initial_epoch(tmp_path):
    from keras_googlenet_training.multiworker import EpochBackup

    class EpochLog(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

    def fit(backup_dir, **kwargs):
        log = EpochLog()
        model.fit(x, y, batch_size=4, verbose=0, callbacks=[
            EpochBackup(str(backup_dir), restore_on_train_begin=True), log], **kwargs)
        return log.epochs

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    assert fit(tmp_path / "a", epochs=2) == [0, 1]
    steps = int(model.optimizer.iterations.numpy())
    model.optimizer.iterations.assign(0)
    assert fit(tmp_path / "a", epochs=3) == [2]  # restored: epochs 0-1 are not redone
    assert int(model.optimizer.iterations.numpy()) == steps + 2  # the step count came back
    # a new phase with an empty backup starts where it is told, not at the epoch restored above
    assert fit(tmp_path / "b", epochs=5, initial_epoch=3) == [3, 4]


@pytest.mark.slow
def test_folder_dataset_training_emits_no_spurious_keras_warnings(tmp_path):
    # Folder datasets have unknown size (unreadable files are dropped), so every Keras
    # validation pass ends with "Your input ran out of data" unless train() silences it.
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, colour in enumerate(((200, 30, 30), (30, 200, 30))):
        folder = tmp_path / "data" / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(10):
            pixels = np.clip(rng.normal(colour, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(TrainConfig(
            dataset=f"folder:{tmp_path / 'data'}", input_size=33, width_multiplier=0.25,
            batch_size=4, epochs=2, steps_per_epoch=2, aux=False, output_dir=str(tmp_path),
            run_name="folder",
        ), log=lambda *_: None)
    assert result.metrics["epochs_completed"] == 2
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "ran out of data" in m], messages


def _signalled(args, signum, ready):
    """Start `googlenet-train ARGS`, call `ready(process)` (it returns once the moment to
    stop has come), send `signum`: `(exit status, stderr)`. It never outlives the test."""
    process = subprocess.Popen([*TRAIN_COMMAND, *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=QUIET_TF)
    try:
        ready(process)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, err


def _interrupted_at(err, epochs):
    """The epoch N of stderr's one line "interrupted after epoch N of EPOCHS; ...", which
    must be the only line saying so, with no traceback."""
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if "interrupted" in line]
    match = re.fullmatch(rf"interrupted after epoch (\d) of {epochs}; run the same command "
                         r"to resume\.", lines[0]) if len(lines) == 1 else None
    assert match, err[-3000:]
    return int(match[1])


def _wait_for_backup(process, pointer, epoch, timeout=240):
    """Wait until the backup holds `epoch` completed epochs; fail if training ends first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pointer.exists() and json.loads(pointer.read_text()).get("epoch", 0) >= epoch:
            return
        assert process.poll() is None, "training ended before it could be interrupted"
        time.sleep(0.05)
    pytest.fail(f"no backup of epoch {epoch} appeared")


@pytest.mark.slow
def test_ctrl_c_then_sigkill_then_the_same_command_ends_with_the_uninterrupted_steps(tmp_path):
    """#14: SIGINT (Ctrl-C) mid-epoch used to print a 58-line KeyboardInterrupt traceback.
    A SIGKILL gives no chance to clean up: the backups alone must resume the run exactly."""
    epochs, steps = 5, 5
    args = ["--input-size", "33", "--no-aux", "--width-multiplier", "0.25", "--batch-size",
            "16", "--epochs", str(epochs), "--steps-per-epoch", str(steps), "--no-ema",
            "--output-dir", str(tmp_path), "--run-name", "stopped"]
    run = tmp_path / "stopped"
    pointer = run / "backup" / "phase0" / "latest.json"

    # Interrupted in epoch 2, once epoch 1 is backed up.
    code, err = _signalled(args, signal.SIGINT,
                           lambda process: _wait_for_backup(process, pointer, epoch=1))
    assert code == 130, err[-3000:]
    backed_up = _interrupted_at(err, epochs)
    assert backed_up in (1, 2) and backed_up == json.loads(pointer.read_text())["epoch"]
    assert not (run / "metrics.json").exists()

    def one_more_epoch_backed_up(process):  # resumed, then killed mid-epoch
        _wait_for_backup(process, pointer, epoch=backed_up + 1)
        time.sleep(0.5)

    code, _ = _signalled(args, signal.SIGKILL, one_more_epoch_backed_up)
    assert code == -signal.SIGKILL
    assert not (run / "metrics.json").exists()

    result = _cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(resuming)" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_completed"] == epochs and metrics["total_steps"] == epochs * steps
    assert run_dir_lib.read_history(run / "history.csv")["epoch"] == list(range(epochs))


def test_a_resumed_training_stream_is_the_uninterrupted_one_from_that_epoch():
    """#18: a resumed run restarted its data stream, so its later epochs saw the first
    epochs' images again. Each epoch's batches are now a function of (seed, epoch)."""
    import tensorflow as tf

    from keras_googlenet_training.pipeline import training_stream

    images = np.arange(40 * 8 * 8 * 3, dtype="uint8").reshape(40, 8, 8, 3)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(40, dtype="int32")))
    args = dict(input_size=8, batch_size=4, steps_per_epoch=3, flip=True, seed=5)

    def batches(first_epoch):
        stream = training_stream(dataset, first_epoch=first_epoch, end_epoch=3, **args)
        return [(x.numpy(), y.numpy()) for x, y in stream]

    whole, resumed = batches(0), batches(1)
    assert len(whole) == 9 and len(resumed) == 6
    for (x, y), (x2, y2) in zip(whole[3:], resumed, strict=True):
        np.testing.assert_array_equal(y, y2)
        np.testing.assert_array_equal(x, x2)  # the augmentation too
    assert not np.array_equal(whole[0][1], whole[3][1])  # each epoch its own order


def test_a_folder_dataset_file_order_is_keyed_on_the_epoch_not_on_the_passes(tmp_path):
    """#18: a folder dataset reshuffled its file list at every pass, so a run resumed at
    epoch 1 read epoch 0's order. `train_for_epoch` keys it on (seed, epoch)."""
    from PIL import Image

    from keras_googlenet_training.data import load_dataset
    from keras_googlenet_training.pipeline import training_stream

    for c, name in enumerate(("a", "b")):
        (tmp_path / name).mkdir()
        for i in range(12):
            Image.fromarray(np.full((8, 8, 3), c * 100 + i, np.uint8)).save(
                tmp_path / name / f"{i}.png")
    splits = load_dataset(f"folder:{tmp_path}", seed=3, val_fraction=0.25)
    args = dict(input_size=8, batch_size=6, steps_per_epoch=3, flip=False, distort=False,
                area_range=(1.0, 1.0), seed=3, shuffle_buffer=1)

    def batches(source, first_epoch):
        stream = training_stream(source, first_epoch=first_epoch, end_epoch=3, **args)
        return [x.numpy() for x, _ in stream]

    whole, resumed = batches(splits.train_for_epoch, 0), batches(splits.train_for_epoch, 1)
    for x, x2 in zip(whole[3:], resumed, strict=True):
        np.testing.assert_array_equal(x, x2)
    # The split without the epoch key is what a resume used to read: not the same.
    old = batches(splits.train, 1)
    assert any(not np.array_equal(x, x2) for x, x2 in zip(whole[3:], old, strict=True))


@pytest.mark.slow
def test_a_replacement_stopped_before_its_swap_is_swapped_in_not_trained_again(
        finished_run, tmp_path, capsys):
    """#18: a replacement killed between finishing and its swap: the same command used to
    swap it in, then train a whole new run over it."""
    import shutil

    target, staging = tmp_path / "smoke", tmp_path / ".smoke.replacement"
    shutil.copytree(finished_run, target)
    shutil.copytree(finished_run, staging)
    config = json.loads((staging / "config.json").read_text())
    config["output_dir"] = str(tmp_path)  # as if it had been trained here
    (staging / "config.json").write_text(json.dumps(config))
    metrics = json.loads((staging / "metrics.json").read_text())
    metrics["marker"] = "the replacement"
    (staging / "metrics.json").write_text(json.dumps(metrics))
    (target / "notes.txt").write_text("mine")
    code = main([*SMALL, "--epochs", "2", "--steps-per-epoch", "4", "--output-dir",
                 str(tmp_path), "--run-name", "smoke", "--overwrite"])
    assert code == 0
    assert "nothing trained again" in capsys.readouterr().out
    assert json.loads((target / "metrics.json").read_text())["marker"] == "the replacement"
    assert (target / "notes.txt").read_text() == "mine" and not staging.exists()


def test_a_symlinked_run_directory_is_refused_before_anything_is_written(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "metrics.json").write_text("{}")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match="`run_name`.*symbolic link"):
        TrainConfig(output_dir=str(tmp_path / "runs"), run_name="r", overwrite=True).resolved()
    assert sorted(os.listdir(tmp_path / "runs")) == ["r"]
    assert os.listdir(elsewhere) == ["metrics.json"]


TINY = ["--input-size", "33", "--no-aux", "--width-multiplier", "0.25", "--batch-size", "16",
        "--no-ema", "--precision", "float32"]
OLD_RUN = ("model.keras", "inference.keras", "metrics.json", "history.csv", "config.json")


@pytest.mark.slow
def test_overwrite_keeps_the_finished_run_until_its_replacement_has_finished(tmp_path, capsys):
    """#18: --overwrite deleted model.keras, inference.keras and metrics.json before the
    replacement had trained; a diverged or Ctrl-C'd replacement left neither model."""
    args = [*TINY, "--epochs", "1", "--steps-per-epoch", "2", "--output-dir", str(tmp_path),
            "--run-name", "r"]
    run = tmp_path / "r"
    assert main(args) == 0
    (run / "notes.txt").write_text("mine")  # the user's own file in the run directory
    old = {name: (run / name).read_bytes() for name in OLD_RUN}

    def old_run_is_intact():
        assert {name: (run / name).read_bytes() for name in OLD_RUN} == old
        keras.models.load_model(run / "model.keras")
        keras.models.load_model(run / "inference.keras")
        assert (run / "notes.txt").read_text() == "mine"

    # A replacement that diverges.
    assert main([*args, "--overwrite", "--optimizer", "sgd", "--learning-rate", "1e30"]) == 3
    assert "Training diverged" in capsys.readouterr().err
    old_run_is_intact()

    # A replacement interrupted by Ctrl-C in its first epoch.
    staging = tmp_path / ".r.replacement"
    started = time.time()

    def replacement_began(process):
        deadline = started + 600
        # config.json is rewritten just before training (the diverged attempt left one)
        while not ((staging / "config.json").exists()
                   and (staging / "config.json").stat().st_mtime > started):
            assert process.poll() is None and time.time() < deadline, "no replacement began"
            time.sleep(0.05)

    code, err = _signalled([*args, "--overwrite", "--epochs", "3"], signal.SIGINT,
                           replacement_began)
    assert code == 130, err[-3000:]
    assert "The finished run it was to replace is unchanged" in err and "Traceback" not in err
    old_run_is_intact()

    # The replacement, finished, is swapped in whole; the user's file moves with it.
    assert main([*args, "--overwrite", "--epochs", "2"]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    assert (run / "notes.txt").read_text() == "mine"
    assert not staging.exists() and sorted(os.listdir(tmp_path)) == ["r"]
    assert RUN_FILES - {"best.weights.h5"} <= set(os.listdir(run))


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_a_second_trainer_is_refused_at_once(tmp_path, capsys):
    """#18: SIGTERM (what schedulers and Kubernetes send) killed the run without a word;
    two trainers on one run directory wrote over each other's backups."""
    epochs = 4
    args = [*TINY, "--epochs", str(epochs), "--steps-per-epoch", "3", "--output-dir",
            str(tmp_path), "--run-name", "held"]
    run = tmp_path / "held"

    def second_refused_then_epoch_1_backed_up(first):
        deadline = time.time() + 600
        while not (run / "labels.txt").exists():  # written under the lock, before training
            assert first.poll() is None and time.time() < deadline, "the first did not start"
            time.sleep(0.05)
        # Frozen while the second starts, so it cannot finish first on a busy machine; a
        # stopped process still holds its lock, as a busy one does.
        first.send_signal(signal.SIGSTOP)
        try:
            second = _cli(*args, timeout=300)
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 2, second.stderr[-3000:]
        # Only our lines: TensorFlow's start-up log (oneDNN's "round-off errors" on AVX-512
        # CPUs) is not silenced, as the user's TF_CPP_MIN_LOG_LEVEL here stands.
        lines = [line for line in second.stderr.splitlines()
                 if line.startswith("googlenet-train: error")]
        assert len(lines) == 1 and f"process {first.pid}" in lines[0], second.stderr[-3000:]
        assert "in use by another googlenet-train" in lines[0]
        assert first.poll() is None, "the first trainer ended before the second was refused"
        _wait_for_backup(first, run / "backup" / "phase0" / "latest.json", epoch=1,
                         timeout=600)

    code, err = _signalled(args, signal.SIGTERM, second_refused_then_epoch_1_backed_up)
    assert code == 143, err[-3000:]
    assert _interrupted_at(err, epochs) == json.loads(
        (run / "backup" / "phase0" / "latest.json").read_text())["epoch"]
    assert not (run / "metrics.json").exists()
    assert not (tmp_path / ".held.lock").exists()  # released with the process

    assert main(args) == 0  # the same command resumes and finishes
    assert "(resuming)" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_completed"] == epochs and metrics["total_steps"] == epochs * 3


DETERMINISTIC_TRAIN = (
    "import sys, tensorflow as tf; tf.config.experimental.enable_op_determinism(); "
    "from keras_googlenet_training.cli.train import main; sys.exit(main(sys.argv[1:]))")


def _deterministic(args):
    return [sys.executable, "-c", DETERMINISTIC_TRAIN, *args]


@pytest.mark.slow
def test_a_run_killed_after_epoch_1_and_resumed_ends_with_the_uninterrupted_history(tmp_path):
    """#18: the resumed epochs saw the images (and dropout masks) of the first epochs
    again, so the curve differed from an uninterrupted run's."""
    def args(name):  # dropout on: its random state must resume too
        return [*TINY, "--epochs", "3", "--steps-per-epoch", "3", "--output-dir",
                str(tmp_path), "--run-name", name]

    # Both at once: the test takes the time of one run, not two.
    whole_log = open(tmp_path / "whole.log", "w+", encoding="utf-8")  # noqa: SIM115
    whole = subprocess.Popen(_deterministic(args("whole")), env=QUIET_TF, stdout=whole_log,
                             stderr=subprocess.STDOUT, text=True)
    killed = subprocess.Popen(_deterministic(args("killed")), env=QUIET_TF,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_for_backup(killed, tmp_path / "killed" / "backup" / "phase0" / "latest.json", 1,
                         timeout=600)
        killed.kill()
        killed.wait(timeout=60)
        assert whole.wait(timeout=900) == 0, (tmp_path / "whole.log").read_text()[-3000:]
    finally:
        whole_log.close()
        for process in (whole, killed):
            if process.poll() is None:
                process.kill()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    resumed = subprocess.run(_deterministic(args("killed")), env=QUIET_TF, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(resuming)" in resumed.stdout
    expected = run_dir_lib.read_history(tmp_path / "whole" / "history.csv")
    got = run_dir_lib.read_history(tmp_path / "killed" / "history.csv")
    assert got.keys() == expected.keys() and len(got["epoch"]) == 3
    for column in expected:
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-5, err_msg=column)
