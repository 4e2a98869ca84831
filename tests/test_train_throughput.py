"""benchmarks/train_throughput.py: its arguments, its table, and a tiny run end to end."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_throughput.py"


def _script():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args, timeout=60):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--settings", "default,fast"], "--settings: unknown ['fast']"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--warmup", "0"], "--warmup must be 1 or more"),
    (["--torch-python", "/no/such/python"], "--torch-python /no/such/python: cannot import"),
])
def test_bad_arguments_are_named(args, message):
    done = _run(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_the_table_gives_medians_over_repeats_and_the_ratio_to_torchvision():
    ours = {"model": "keras_googlenet torchvision", "precision": "float32",
            "setting": "inter1", "gflop_per_image": 9.0, "peak_gflops": 100.0}
    torch = {"model": "torchvision", "precision": "float32", "setting": "-"}
    results = [{**ours, "images_per_second": rate} for rate in (4.0, 6.0, 5.0)]
    results += [{**torch, "images_per_second": rate} for rate in (4.0, 4.0, 9.0)]
    lines = _script().table(results, batch_size=32).splitlines()
    ours_cells = [cell.strip() for cell in lines[2].split("|")[1:-1]]
    assert ours_cells[2:5] == ["inter1", "5.00", "4.00, 6.00, 5.00"]
    assert ours_cells[6:] == ["45", "100", "45 %", "1.25×"]  # 5.0 x 9 GFLOP; 5.0 / 4.0
    torch_cells = [cell.strip() for cell in lines[3].split("|")[1:-1]]
    assert torch_cells[0] == "torchvision" and torch_cells[-1] == "1.00×"


@pytest.mark.slow
def test_a_tiny_run_prints_one_row_per_setting_and_leaves_out_torchvision_without_torch():
    done = _run("--input-size", "64", "--batch-size", "2", "--steps", "1", "--warmup", "1",
                "--repeats", "1", "--precisions", "float32", "--settings", "default,inter1",
                timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| keras_googlenet")]
    assert [row.split("|")[3].strip() for row in rows] == ["default", "inter1"]
    if importlib.util.find_spec("torch") is None:  # the dev environment carries no PyTorch
        assert all(row.rstrip().endswith("| – |") for row in rows)
        assert "torchvision row left out" in done.stderr


def test_cpu_isa_avx2_limits_every_rows_kernels():
    script = _script()
    native = script.row_environment("native", {"PATH": "/bin", "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert native == {"PATH": "/bin", "TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    avx2 = script.row_environment("avx2", {"PATH": "/bin", "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert avx2["ONEDNN_MAX_CPU_ISA"] == "AVX2" and avx2["ATEN_CPU_CAPABILITY"] == "avx2"
    assert avx2["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    assert avx2["TF_ENABLE_ONEDNN_OPTS"] == "1"  # the user's setting passes through
