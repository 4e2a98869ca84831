"""benchmarks/gpu_check.py works before a GPU is lent: on the CPU, tiny, with TensorFlow hidden.

The GPU machine has JAX and PyTorch but no TensorFlow; a `tensorflow` package that raises on
import, first on PYTHONPATH, makes this machine look the same to the script's rows.
"""

import pathlib
import re
import subprocess
import sys

import pytest
from _processes import quick_xla_env

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _run(*args, env_path=None, timeout=60):
    env = None
    if env_path is not None:
        import os

        env = quick_xla_env(dict(os.environ, PYTHONPATH=str(env_path)))
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--precisions", "float16"], "--precisions: unknown ['float16']"),
    (["--frameworks", "tf"], "--frameworks: unknown ['tf']"),
    (["--warmup", "-1"], "--warmup must be 0 or more"),
])
def test_bad_arguments_are_named(args, message):
    done = _run(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_an_empty_wheel_folder_is_refused(tmp_path):
    done = _run("--wheels", str(tmp_path))
    assert done.returncode == 1
    assert f"--wheels {tmp_path}: no .whl files there" in done.stderr


@pytest.mark.slow
def test_the_table_on_cpu_without_tensorflow(tmp_path):
    hidden = tmp_path / "no_tensorflow" / "tensorflow"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('no TensorFlow on the GPU machine')\n")
    # bf16 is the less-trodden path (the mixed policy); float32 runs the same code
    done = _run("--input-size", "64", "--batch-size", "2", "--steps", "2", "--warmup", "1",
                "--classes", "5", "--precisions", "bfloat16", "--row-timeout", "900",
                env_path=hidden.parent, timeout=1000)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines()
            if line.startswith("| ") and "bfloat16" in line}
    assert set(rows) == {"keras-jax", "torchvision"}
    keras_cells = [cell.strip() for cell in rows["keras-jax"].split("|")[1:-1]]
    assert keras_cells[2] == "cpu"
    milliseconds, images_per_second = float(keras_cells[3]), float(keras_cells[4])
    # both printed to one decimal
    assert milliseconds > 0 and images_per_second == pytest.approx(2e3 / milliseconds, abs=0.06)
    try:
        import torch  # noqa: F401
    except ImportError:  # the dev environment has no PyTorch: the row says so
        assert re.search(r"not run: .*No module named 'torch'", rows["torchvision"])
    else:
        assert "not run" not in rows["torchvision"]
