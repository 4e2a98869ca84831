"""keras_googlenet_training.cpu: oneDNN on for an AVX2-only CPU, and nowhere else (#21)."""

import os
import subprocess
import sys

import pytest

from keras_googlenet_training import cli
from keras_googlenet_training.cpu import ONEDNN_ENV, choose_cpu_kernels, cpu_flags

AVX2_EPYC = {"sse4_2", "avx", "avx2", "fma", "bmi2"}  # an AMD EPYC of family 23 or 25


def test_an_avx2_only_cpu_gets_onednn():
    environ = {}
    assert choose_cpu_kernels(environ, AVX2_EPYC) is True
    assert environ == {ONEDNN_ENV: "1"}


@pytest.mark.parametrize("extra", ["avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile"])
def test_where_tensorflow_turns_onednn_on_itself_nothing_is_set(extra):
    environ = {}
    assert choose_cpu_kernels(environ, AVX2_EPYC | {"avx512f", extra}) is False
    assert environ == {}


@pytest.mark.parametrize("flags", [{"sse4_2", "avx"}, AVX2_EPYC | {"avx512f"},
                                   {"fp", "asimd", "sve"}, set()],
                         ids=["x86-without-avx2", "avx512-without-vnni", "aarch64",
                              "no-cpuinfo"])
def test_other_cpus_are_left_to_tensorflow(flags):
    environ = {}
    assert choose_cpu_kernels(environ, flags) is False
    assert environ == {}


def test_the_users_setting_stands():
    environ = {ONEDNN_ENV: "0"}
    assert choose_cpu_kernels(environ, AVX2_EPYC) is False
    assert environ == {ONEDNN_ENV: "0"}


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\n"
                       "flags\t\t: fpu\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "fma"}
    assert cpu_flags(str(tmp_path / "missing")) == set()


def test_quiet_start_chooses_before_tensorflow_starts(monkeypatch):
    """Every CLI's main calls quiet_start first (tests/test_imports.py: no CLI module
    imports TensorFlow before it)."""
    monkeypatch.setattr("keras_googlenet_training.cpu.cpu_flags", lambda: AVX2_EPYC)
    environ = {cli.TF_LOG_LEVEL_ENV: "0"}  # the user's log level: quiet_start stops early
    assert cli.quiet_start(environ) is False
    assert environ == {cli.TF_LOG_LEVEL_ENV: "0", ONEDNN_ENV: "1"}


CONVOLVE = """
import sys
from keras_googlenet_training.cpu import choose_cpu_kernels
import os
choose_cpu_kernels(flags={"avx2", "fma"})  # as on an AVX2-only EPYC
import tensorflow as tf
tf.nn.conv2d(tf.ones([1, 8, 8, 8]), tf.ones([3, 3, 8, 8]), 1, "SAME").numpy()
print("TF_ENABLE_ONEDNN_OPTS=" + os.environ["TF_ENABLE_ONEDNN_OPTS"])
"""


@pytest.mark.slow
@pytest.mark.parametrize("user_setting, onednn_convolves", [(None, True), ("0", False)])
def test_tensorflow_runs_what_was_chosen(user_setting, onednn_convolves):
    """The variable set before the import is what TensorFlow obeys: its convolution is a
    oneDNN primitive (oneDNN's verbose log names it) unless the user said otherwise."""
    env = {k: v for k, v in os.environ.items() if k != ONEDNN_ENV}
    env.update({"ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
    if user_setting is not None:
        env[ONEDNN_ENV] = user_setting
    done = subprocess.run([sys.executable, "-c", CONVOLVE], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    convolutions = [line for line in done.stdout.splitlines()
                    if line.startswith("onednn_verbose") and ",convolution," in line]
    assert bool(convolutions) is onednn_convolves, done.stdout[-2000:]
    assert f"TF_ENABLE_ONEDNN_OPTS={user_setting or '1'}" in done.stdout.splitlines()
