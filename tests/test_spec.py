import dataclasses

import pytest

from keras_googlenet import spec


def test_table1_has_nine_blocks_in_stage_order():
    assert [b for stage in spec.STAGES for b in stage] == list(spec.INCEPTION_WIDTHS)
    assert spec.BLOCK_NAMES[0] == "inception_3a" and spec.BLOCK_NAMES[-1] == "inception_5b"


def test_block_output_channels_follow_table1():
    expected = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528,
                "4e": 832, "5a": 832, "5b": 1024}
    got = {k: spec.block_output_channels(v) for k, v in spec.INCEPTION_WIDTHS.items()}
    assert got == expected


def test_resolve_widths_accepts_tuples_partial_dicts_and_prefixed_names():
    widths = spec.resolve_widths({"inception_3a": (8, 8, 8, 8, 8, 8), "5b": {"1x1": 100}})
    assert widths["3a"] == (8,) * 6
    assert widths["5b"] == (100, 192, 384, 48, 128, 128)
    assert widths["4a"] == spec.INCEPTION_WIDTHS["4a"]


def test_width_multiplier_rounds_to_multiples_of_eight():
    half = spec.resolve_widths(width_multiplier=0.5)
    assert half["3a"] == (32, 48, 64, 8, 16, 16)
    assert all(w % 8 == 0 for cols in half.values() for w in cols)
    assert spec.scale_width(16, 0.1) == 8  # never below one divisor
    assert spec.stem_widths() == spec.STEM_WIDTHS
    assert spec.stem_widths(0.5) == {"conv1": 32, "conv2_reduce": 32, "conv2": 96}


@pytest.mark.parametrize(
    "widths, fragment",
    [
        ([1, 2, 3], "`widths` must be a dict"),
        ({"9z": (1,) * 6}, "unknown block"),
        ({"3a": (1, 2, 3)}, "six positive ints"),
        ({"3a": (1, 2, 3, 4, 5, 0)}, "six positive ints"),
        ({"3a": (1, 2, 3, 4, 5, 6.5)}, "six positive ints"),
        ({"3a": {"7x7": 3}}, "unknown columns"),
    ],
)
def test_malformed_widths_are_rejected(widths, fragment):
    with pytest.raises(ValueError, match=fragment):
        spec.resolve_widths(widths)


@pytest.mark.parametrize("multiplier", [0, -1.0, float("nan"), "2", True])
def test_bad_width_multiplier_is_rejected(multiplier):
    with pytest.raises(ValueError, match="width_multiplier"):
        spec.resolve_widths(width_multiplier=multiplier)


def test_unknown_variant_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"variant.*factorized.*torchvision.*v1.*v1_bn"):
        spec.get_variant("v3")


def test_minimum_input_sizes():
    assert spec.min_input_size(False, "v1") == 32
    assert spec.min_input_size(True, "v1") == 65  # 5x5 aux pool on a ceil(65/16)=5 map
    assert spec.min_input_size(True, "torchvision") == 49  # adaptive 4x4 pool


def test_variant_options_have_self_explaining_names():
    assert {v.five_by_five_branch for v in spec.VARIANTS.values()} == set(
        spec.FIVE_BY_FIVE_BRANCHES)
    assert {v.aux_pool for v in spec.VARIANTS.values()} == set(spec.AUX_POOLS)
    assert spec.VARIANTS["factorized"].five_by_five_branch == "two_3x3"
    assert spec.VARIANTS["torchvision"].aux_pool == "adaptive_4x4"
    assert spec.VARIANTS["v1"].has_fixed_size_aux_pool
    assert not spec.VARIANTS["torchvision"].has_fixed_size_aux_pool


def test_an_unknown_block_option_is_refused_naming_it():
    with pytest.raises(ValueError, match="aux_pool"):
        dataclasses.replace(spec.VARIANTS["factorized"], aux_pool="avg")
    with pytest.raises(ValueError, match="five_by_five_branch"):
        dataclasses.replace(spec.VARIANTS["factorized"], five_by_five_branch="3x3x2")
