"""`googlenet-train --qat-epochs`: a quantization-aware phase after the float one (or alone,
from `--init-weights`), kept in the run directory as `qat.keras`, phase-marked history, and
resumed after an interruption like any other phase."""

import json
import os
import signal
import threading
import time

import keras
import numpy as np
import pytest

import keras_googlenet  # noqa: F401  (registers the QAT layers qat.keras is made of)
from keras_googlenet.quantization import ActivationQuantizer
from keras_googlenet_training import run_dir as run_dir_lib
from keras_googlenet_training.callbacks import TrainingInterrupted
from keras_googlenet_training.cli.train import main
from keras_googlenet_training.train import train
from keras_googlenet_training.train_config import TrainConfig

TINY = ["--input-size", "33", "--no-aux", "--width-multiplier", "0.25", "--batch-size", "16",
        "--no-ema", "--precision", "float32", "--steps-per-epoch", "2"]
TINY_CONFIG = dict(input_size=33, aux=False, width_multiplier=0.25, batch_size=16, ema=False,
                   precision="float32", steps_per_epoch=2)


def _learned_ranges(model):
    return [(float(q.range_min), float(q.range_max)) for q in model.layers
            if isinstance(q, ActivationQuantizer)]


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("qat_runs")
    code = main([*TINY, "--epochs", "1", "--qat-epochs", "1", "--output-dir", str(out),
                 "--run-name", "qat"])
    assert code == 0
    return out / "qat"


@pytest.mark.slow
def test_a_qat_phase_keeps_its_model_beside_the_float_one_with_phase_marked_epochs(qat_run):
    assert {"model.keras", "inference.keras", "qat.keras", "metrics.json"} <= set(
        os.listdir(qat_run))
    assert not (qat_run / "backup").exists() and not list(qat_run.glob("phase*.weights.h5"))
    qat = keras.saving.load_model(qat_run / "qat.keras")
    ranges = _learned_ranges(qat)
    assert ranges and all(high > low for low, high in ranges)  # every range learned
    float_model = keras.saving.load_model(qat_run / "model.keras")
    assert not _learned_ranges(float_model)  # model.keras stays the float model
    assert run_dir_lib.read_phases(qat_run / "history.csv") == ["float", "qat"]
    assert run_dir_lib.read_history(qat_run / "history.csv")["epoch"] == [0, 1]
    metrics = json.loads((qat_run / "metrics.json").read_text())
    assert metrics["epoch_phases"] == ["float", "qat"] and metrics["epochs_completed"] == 2
    assert metrics["total_steps"] == 4
    assert metrics["qat"]["epochs"] == 1 and metrics["qat"]["learning_rate"] == pytest.approx(
        2e-5)  # a hundredth of adam's default 2e-3
    assert 0 <= metrics["qat"]["final_val_main_accuracy"] <= 1


@pytest.mark.slow
def test_qat_alone_starts_from_init_weights_and_leaves_the_float_model_as_it_was(
        qat_run, tmp_path):
    result = train(TrainConfig(**TINY_CONFIG, epochs=0, qat_epochs=1,
                               init_weights=str(qat_run), output_dir=str(tmp_path),
                               run_name="alone"), log=lambda *_: None)
    source = keras.saving.load_model(qat_run / "model.keras")
    np.testing.assert_array_equal(result.model.get_layer("conv1_conv").kernel.numpy(),
                                  source.get_layer("conv1_conv").kernel.numpy())
    assert run_dir_lib.read_phases(tmp_path / "alone" / "history.csv") == ["qat"]
    assert all(high > low for low, high in _learned_ranges(result.qat_model))
    assert result.metrics["total_steps"] == 2 and result.metrics["qat"]["epochs"] == 1
    assert keras.saving.load_model(tmp_path / "alone" / "qat.keras").count_params() == \
        result.qat_model.count_params()


def _interrupt_once_backed_up(pointer, epoch):
    """SIGINT this process (Ctrl-C) once `pointer` names `epoch`: mid-way through the next."""
    def watch():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if json.loads(pointer.read_text())["epoch"] >= epoch:
                    os.kill(os.getpid(), signal.SIGINT)
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()


@pytest.mark.slow
def test_a_qat_phase_interrupted_after_its_first_epoch_resumes_from_its_backup(
        qat_run, tmp_path):
    config = TrainConfig(**{**TINY_CONFIG, "steps_per_epoch": 3}, epochs=0, qat_epochs=2,
                         init_weights=str(qat_run), output_dir=str(tmp_path), run_name="cut")
    run = tmp_path / "cut"
    _interrupt_once_backed_up(run / "backup" / "phase0" / "latest.json", 1)
    with pytest.raises(TrainingInterrupted) as interrupted:
        train(config, log=lambda *_: None)
    assert interrupted.value.epochs_completed == 1
    assert not (run / "metrics.json").exists()
    lines = []
    result = train(config, log=lines.append)
    assert "(resuming)" in lines[0]
    assert run_dir_lib.read_phases(run / "history.csv") == ["qat", "qat"]
    assert run_dir_lib.read_history(run / "history.csv")["epoch"] == [0, 1]
    assert result.metrics["total_steps"] == 6  # the backup restored the step counter
    assert all(high > low for low, high in _learned_ranges(result.qat_model))


def test_a_negative_qat_epochs_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["--qat-epochs", "-1", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`qat_epochs` must be an int >= 0" in err[0], err
    assert not out.exists() or not os.listdir(out)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"qat_epochs": 1.5}, "`qat_epochs` must be an int >= 0"),
    ({"qat_epochs": True}, "`qat_epochs` must be an int >= 0"),
    ({"epochs": 0, "qat_epochs": 1}, "`epochs` must be a positive int \\(0 only for QAT"),
    ({"epochs": 0}, "`epochs` must be a positive int"),
    ({"qat_epochs": 1, "qat_learning_rate": 0}, "`qat_learning_rate` must be a positive"),
    ({"qat_epochs": 1, "strategy": "multi-worker"}, "`qat_epochs` runs with Model.fit only"),
    ({"qat_epochs": 1, "loop": "custom"}, "`qat_epochs` runs with Model.fit only"),
])
def test_bad_qat_settings_are_refused_up_front(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        TrainConfig(**kwargs).resolved()


def test_the_qat_learning_rate_defaults_to_a_hundredth_of_the_float_one():
    config = TrainConfig(optimizer="sgd", qat_epochs=2).resolved()
    assert config.qat_learning_rate == pytest.approx(0.0005)
    assert config.all_phases() == [(0, 8), (8, 10)]
    assert TrainConfig().resolved().qat_learning_rate is None  # no QAT phase
