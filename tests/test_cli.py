"""What every command line shares: a quiet start and a --help that says each default once."""

import os
import re
import subprocess
import sys

import pytest

from keras_googlenet_training import cli
from keras_googlenet_training.cli import export as export_cli
from keras_googlenet_training.cli import predict as predict_cli
from keras_googlenet_training.cli import train as train_cli
from keras_googlenet_training.cli import tune as tune_cli


@pytest.mark.parametrize("module", [train_cli, tune_cli, export_cli, predict_cli],
                         ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_help_states_each_default_once(module):
    text = module.build_parser().format_help()
    options = re.split(r"\n  (?=-)", text)[1:]
    repeated = [" ".join(o.split()) for o in options if o.count("default") > 1]
    assert not repeated, repeated


@pytest.mark.slow
def test_start_shows_no_tensorflow_noise_but_our_error():
    """A newcomer's first failing command: one line, ours; no oneDNN, cpu_feature_guard,
    cudart or cuInit lines before it."""
    env = {k: v for k, v in os.environ.items()
           if k not in (cli.TF_LOG_LEVEL_ENV, "KERAS_GOOGLENET_QUIET_START")}
    result = subprocess.run(
        [sys.executable, "-m", "keras_googlenet_training.cli.train", "--epochs", "0"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    output = result.stdout + result.stderr
    assert not [noise for noise in cli.START_NOISE if noise in output], output
    assert result.stderr.splitlines() == [
        "googlenet-train: error: `epochs` must be a positive int (0 only for QAT alone: with "
        "qat_epochs and init_weights); received epochs=0."], \
        result.stderr


def test_a_log_level_and_kernels_the_user_chose_stand(monkeypatch):
    monkeypatch.setattr("keras_googlenet_training.cpu.cpu_flags", lambda: {"avx2", "fma"})
    environ = {cli.TF_LOG_LEVEL_ENV: "0", "TF_ENABLE_ONEDNN_OPTS": "0"}
    assert cli.quiet_start(environ) is False
    assert environ == {cli.TF_LOG_LEVEL_ENV: "0", "TF_ENABLE_ONEDNN_OPTS": "0"}


def test_only_the_known_noise_is_dropped(capfd):
    with cli._stderr_without(cli.START_NOISE):
        os.write(2, b"I0000 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n")
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n")
        os.write(2, b"E0000 some_kernel.cc:1] an error that matters\n")
    assert capfd.readouterr().err == "E0000 some_kernel.cc:1] an error that matters\n"
