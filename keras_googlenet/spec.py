"""GoogLeNet's architecture as data: Table 1 of the paper and the variant presets. The
builder reads only what is here, so a width search or a new variant changes a table."""

from __future__ import annotations

import dataclasses

from keras_googlenet.checks import fail, one_of, positive_number

__all__ = ["AUX_CONV_FILTERS", "AUX_DENSE_UNITS", "AUX_POOLED_SIZE", "AUX_POOLS", "AUX_TAPS",
           "BLOCK_NAMES", "ENDPOINTS", "FIVE_BY_FIVE_BRANCHES", "INCEPTION_WIDTHS", "STAGES",
           "STEM_WIDTHS", "VARIANTS", "WIDTH_COLUMNS", "VariantSpec", "backbone_params",
           "block_output_channels", "check_input_shape", "get_variant", "min_input_size",
           "resolve_widths", "scale_width", "stem_widths"]

# Table 1 of Szegedy et al. 2014, the six width columns of each Inception block.
WIDTH_COLUMNS = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj")

INCEPTION_WIDTHS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}

# Stages in order; a stride-2 max pool precedes every stage (pool2, pool3, pool4).
STAGES = (("3a", "3b"), ("4a", "4b", "4c", "4d", "4e"), ("5a", "5b"))

# Stem: conv 7x7/2 (64), max pool, conv 1x1 (64) -> conv 3x3 (192).
STEM_WIDTHS = {"conv1": 64, "conv2_reduce": 64, "conv2": 192}

# Auxiliary classifiers tap these blocks (paper Section 5).
AUX_TAPS = {"aux1": "4a", "aux2": "4d"}
AUX_CONV_FILTERS = 128
AUX_DENSE_UNITS = 1024
AUX_POOLED_SIZE = 4  # the paper's 5x5/3 average pool turns 14x14 into 4x4

BLOCK_NAMES = tuple(f"inception_{b}" for stage in STAGES for b in stage)
# Stable names of the feature maps worth tapping, in network order (TF-Slim's end_points).
ENDPOINTS = ("conv1", "pool1", "conv2", "pool2") + BLOCK_NAMES[:2] + ("pool3",) + \
    BLOCK_NAMES[2:7] + ("pool4",) + BLOCK_NAMES[7:]

# A network this big (1 GB of float32 weights; width_multiplier ~6.4) is a typo, not a
# model: checked before any variable exists, so a huge multiplier cannot eat all memory.
MAX_BACKBONE_PARAMS = 250_000_000

# keras.applications' lower bounds: below these the network degenerates.
MIN_INPUT_SIZE = 32  # 5b is then 1x1
DOWNSAMPLING_BEFORE_AUX = 4  # conv1, pool1, pool2, pool3 each halve the size

# What the Inception block's "5x5" branch convolves with: the paper's 5x5, torchvision's 3x3
# or two stacked 3x3 (`googlenet.inception_block` says why).
FIVE_BY_FIVE_BRANCHES = ("5x5", "3x3", "two_3x3")
# How the aux heads pool `inception_4a`/`4d`: the paper's (its output size follows the
# input's) or torchvision's (4x4 whatever the input).
AUX_POOLS = ("avg_5x5_stride_3", "adaptive_4x4")


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    """The few block options in which the GoogLeNet variants differ."""

    name: str
    description: str
    batch_norm: bool  # conv without bias + BatchNormalization(eps 1e-3)
    lrn: bool  # LocalResponseNormalization after pool1 and after conv2
    five_by_five_branch: str = "5x5"  # one of FIVE_BY_FIVE_BRANCHES
    last_pool_size: int = 3  # pool4 window: 3 in the paper, 2 in torchvision
    aux_pool: str = "avg_5x5_stride_3"  # one of AUX_POOLS
    preprocessing: str = "tf"  # mode of `preprocess_input`
    batch_norm_epsilon: float = 1e-3

    def __post_init__(self):
        one_of("five_by_five_branch", self.five_by_five_branch, FIVE_BY_FIVE_BRANCHES)
        one_of("aux_pool", self.aux_pool, AUX_POOLS)

    @property
    def has_fixed_size_aux_pool(self):
        """The aux heads flatten a map whose size follows the input (the paper's pool)."""
        return self.aux_pool == "avg_5x5_stride_3"


# Each variant states where it leaves the paper; the fields it omits keep the paper's choice.
VARIANTS = {
    "v1": VariantSpec(
        "v1", "The paper: conv + bias + ReLU, LRN in the stem, true 5x5 branch.",
        batch_norm=False, lrn=True),
    "v1_bn": VariantSpec(
        "v1_bn", "The paper with BatchNormalization after every conv (no bias, no LRN).",
        batch_norm=True, lrn=False),
    "torchvision": VariantSpec(
        "torchvision", "torchvision's topology: BN, a 3x3 kernel in the '5x5' branch, 2x2 "
        "pool4, adaptive 4x4 aux pooling; torchvision weights port onto it.",
        batch_norm=True, lrn=False, five_by_five_branch="3x3", last_pool_size=2,
        aux_pool="adaptive_4x4"),
    "factorized": VariantSpec(
        "factorized", "BN, and the 5x5 branch factorized into two stacked 3x3 convs.",
        batch_norm=True, lrn=False, five_by_five_branch="two_3x3"),
}


def get_variant(variant):
    """The `VariantSpec` of a variant name; `ValueError` listing the names otherwise."""
    return VARIANTS[one_of("variant", variant, sorted(VARIANTS))]


def scale_width(width, multiplier, divisor=8):
    """MobileNet's rounding: nearest multiple of `divisor`, never below 90 % of the target."""
    if multiplier == 1.0:
        return int(width)
    target = width * multiplier
    scaled = max(divisor, int(target + divisor / 2) // divisor * divisor)
    if scaled < 0.9 * target:
        scaled += divisor
    return scaled


def _is_positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _block_override(name, value):
    """(block key, six widths) of one `widths` entry; `ValueError` naming it if malformed."""
    key = str(name).removeprefix("inception_")
    if key not in INCEPTION_WIDTHS:
        raise ValueError(f"`widths` has an unknown block {name!r}; allowed blocks are "
                         f"{list(INCEPTION_WIDTHS)} (optionally prefixed 'inception_').")
    if isinstance(value, dict):
        if unknown := set(value) - set(WIDTH_COLUMNS):
            raise ValueError(f"`widths[{name!r}]` has unknown columns {sorted(unknown)}; "
                             f"allowed columns are {WIDTH_COLUMNS}.")
        merged = {**dict(zip(WIDTH_COLUMNS, INCEPTION_WIDTHS[key], strict=True)), **value}
        value = tuple(merged[c] for c in WIDTH_COLUMNS)
    if not isinstance(value, (tuple, list)) or len(value) != len(WIDTH_COLUMNS) or not all(
            map(_is_positive_int, value)):
        raise ValueError(f"`widths[{name!r}]` must be six positive ints in the order "
                         f"{WIDTH_COLUMNS}; received {value!r}.")
    return key, tuple(value)


def resolve_widths(widths=None, width_multiplier=1.0):
    """The per-block widths `{"3a": (6 ints), ...}` after overrides and scaling; `ValueError`
    naming the argument if malformed. `widths` maps a block ("3a" or "inception_3a") to six
    ints in Table 1's column order `WIDTH_COLUMNS`, or to a dict naming some columns."""
    positive_number("width_multiplier", width_multiplier)
    if widths is not None and not isinstance(widths, dict):
        raise ValueError(f"`widths` must be a dict mapping a block name "
                         f"({', '.join(INCEPTION_WIDTHS)}) to six ints {WIDTH_COLUMNS}; "
                         f"received widths={widths!r}.")
    table = {**INCEPTION_WIDTHS,
             **dict(_block_override(name, value) for name, value in (widths or {}).items())}
    resolved = {key: tuple(scale_width(w, width_multiplier) for w in cols)
                for key, cols in table.items()}
    if (params := backbone_params(resolved, width_multiplier)) > MAX_BACKBONE_PARAMS:
        given = f"`width_multiplier={width_multiplier!r}`{' with these `widths`' if widths else ''}"
        raise ValueError(f"{given} gives a backbone of about {params / 1e6:,.0f} M parameters; at "
                         f"most {MAX_BACKBONE_PARAMS / 1e6:,.0f} M are allowed (the paper's "
                         "GoogLeNet has 6 M): use a smaller `width_multiplier` or `widths`.")
    return resolved


def stem_widths(width_multiplier=1.0):
    """The stem's conv widths `{"conv1": 64, ...}` scaled by `width_multiplier`."""
    return {key: scale_width(width, width_multiplier) for key, width in STEM_WIDTHS.items()}


def backbone_params(block_widths, width_multiplier=1.0):
    """Convolution weights of the stem and the Inception blocks (no heads) on RGB input."""
    conv1, conv2_reduce, c_in = stem_widths(width_multiplier).values()  # in network order
    total = 49 * 3 * conv1 + conv1 * conv2_reduce + 9 * conv2_reduce * c_in
    for block in INCEPTION_WIDTHS:  # in network order
        n1, n3r, n3, n5r, n5, npool = block_widths[block]
        total += c_in * (n1 + n3r + n5r + npool) + 9 * n3r * n3 + 25 * n5r * n5
        c_in = block_output_channels(block_widths[block])
    return total


def block_output_channels(cols):
    """Channels an Inception block emits: the four branches concatenated."""
    return cols[0] + cols[2] + cols[4] + cols[5]


def min_input_size(include_aux, variant):
    """Smallest square input side the chosen heads accept."""
    if not include_aux:
        return MIN_INPUT_SIZE
    # The aux pooling needs a map at least as big as its window at inception_4a/4d.
    needed = 5 if get_variant(variant).has_fixed_size_aux_pool else AUX_POOLED_SIZE
    return max(MIN_INPUT_SIZE, (needed - 1) * 2**DOWNSAMPLING_BEFORE_AUX + 1)


def check_input_shape(input_shape, include_aux, variant, fixed_size=False, arg="input_shape"):
    """`input_shape` as a tuple; `ValueError` naming `arg` unless it is `(height, width,
    channels)` of positive ints (height and width may be None unless `fixed_size`) that the
    chosen heads of `variant` accept."""
    shape = tuple(input_shape)
    if len(shape) != 3 or not _is_positive_int(shape[2]) or not all(
            _is_positive_int(side) or (side is None and not fixed_size) for side in shape[:2]):
        fail(arg, "(height, width, channels) with positive ints" + (
            " (a fixed size)" if fixed_size else " (height and width may be None)"), input_shape)
    minimum = min_input_size(include_aux, variant)
    if any(side is not None and side < minimum for side in shape[:2]):
        raise ValueError(f"Input size must be at least {minimum}x{minimum} for variant="
                         f"{variant!r} {'with' if include_aux else 'without'} auxiliary heads "
                         f"(height and width >= {min_input_size(False, variant)} without them, "
                         f">= {min_input_size(True, variant)} with them); received "
                         f"{arg}={input_shape!r}.")
    if include_aux and get_variant(variant).has_fixed_size_aux_pool and None in shape[:2]:
        raise ValueError(f"The auxiliary heads of variant={variant!r} flatten a pooled map whose "
                         "size depends on the input, so `input_shape` needs a fixed height and "
                         f"width with include_aux=True; received input_shape={input_shape!r}. "
                         "(variant='torchvision' pools adaptively and accepts any size.)")
    return shape
