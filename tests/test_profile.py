import subprocess
import sys

import pytest

from keras_googlenet import GoogLeNet, count_macs, count_params
from keras_googlenet.__main__ import main
from keras_googlenet.complexity import model_profile


@pytest.mark.parametrize("variant, gmacs", [("torchvision", 1.498), ("v1", 1.583)])
def test_macs_at_224_match_the_reference_counts(variant, gmacs):
    macs = count_macs(GoogLeNet(variant=variant))
    assert macs / 1e9 == pytest.approx(gmacs, rel=0.01)


def test_aux_heads_add_about_8_4_million_macs():
    extra = count_macs(GoogLeNet(include_aux=True)) - count_macs(GoogLeNet())
    assert extra / 1e6 == pytest.approx(8.4, rel=0.05)


def test_profile_rows_sum_to_model_totals_and_follow_table1():
    model = GoogLeNet(variant="v1_bn")
    rows = {row["name"]: row for row in model_profile(model)}
    assert sum(r["params"] for r in rows.values()) == count_params(model)
    assert sum(r["macs"] for r in rows.values()) == count_macs(model)
    assert rows["inception_3a"]["output_shape"] == (28, 28, 256)
    assert rows["inception_5b"]["output_shape"] == (7, 7, 1024)
    # 3a: 1x1 conv of 192->64 on 28x28 alone is 9.6 M MACs; the whole block is larger
    assert rows["inception_3a"]["macs"] > 28 * 28 * 192 * 64


def test_macs_need_a_static_input_size():
    with pytest.raises(ValueError, match="fixed `input_shape`"):
        count_macs(GoogLeNet(include_top=False))


def test_summary_cli_prints_table1(capsys):
    assert main(["summary", "--variant", "torchvision"]) == 0
    out = capsys.readouterr().out
    assert "inception_4e" in out and "14x14x832" in out
    assert "6,624,904" in out and "1.498G" in out


@pytest.mark.slow
def test_summary_cli_reports_bad_input_without_a_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "keras_googlenet", "summary", "--input-size", "16"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Input size must be at least 32x32" in result.stderr
    assert "Traceback" not in result.stderr
