"""`TrainConfig`: everything a training run depends on, checked before any work."""

from __future__ import annotations

import dataclasses
import numbers
import os
import re

from keras_googlenet import paths
from keras_googlenet import spec as spec_lib
from keras_googlenet.checks import fail, fraction, one_of, positive_int, positive_number, rate
from keras_googlenet_training import run_dir as run_dir_lib
from keras_googlenet_training.data import dataset_defaults
from keras_googlenet_training.precision import PRECISIONS

OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("mirrored", "multi-worker")
LOOPS = ("fit", "custom")
SCHEDULES = ("cosine", "paper", "constant")
DEFAULT_LEARNING_RATES = {"adam": 2e-3, "sgd": 0.05}
# QAT fine-tunes folded weights without batch statistics to steady them: a hundredth of the
# float peak LR (a twentieth lost 2.3 pt of digits accuracy in benchmarks/qat_vs_ptq.py).
QAT_LR_FACTOR = 0.01


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclasses.dataclass
class TrainConfig:
    """Everything a run depends on; saved as `config.json` so a run can be reproduced."""

    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False  # let TFDS download a dataset that is not prepared
    variant: str = "v1_bn"
    input_size: int | None = None  # None: 80 for digits, else 224
    width_multiplier: float = 1.0
    widths: dict | None = None
    aux: bool = True
    aux_loss_weight: float = 0.3
    dropout: float = 0.4
    epochs: int = 8  # 0: QAT alone, from `init_weights`
    batch_size: int = 64  # per replica
    steps_per_epoch: int | None = None  # None: one pass over the training split
    precision: str = "auto"
    replicas: int | None = None
    strategy: str = "mirrored"  # or "multi-worker" (reads TF_CONFIG)
    loop: str | None = None  # None: Model.fit, or the custom loop under multi-worker
    seed: int = 0
    optimizer: str = "adam"
    learning_rate: float | None = None  # None: 2e-3 for adam, 0.05 for sgd
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    ema: bool = True
    ema_momentum: float | None = None  # None: average about the last 5 % of the steps
    bn_momentum: float = 0.9
    flip: bool | None = None  # None: dataset default
    distort: bool = True
    min_crop_area: float | None = None  # None: dataset default (paper: 0.08)
    cache: bool | None = None  # None: dataset default (on for digits)
    val_fraction: float = 0.2
    qat_epochs: int = 0  # quantization-aware epochs after the float ones (docs/training.md)
    qat_learning_rate: float | None = None  # None: QAT_LR_FACTOR x the float learning rate
    init_weights: str | None = None
    freeze_backbone: bool = False
    unfreeze_after: int | None = None
    run_name: str | None = None
    output_dir: str = "saved_models"
    overwrite: bool = False

    def resolved(self):
        """A copy with dataset-dependent defaults filled in, after validation."""
        self.validate()
        defaults = dataset_defaults(self.dataset)
        config = dataclasses.replace(self)
        for key in ("input_size", "flip", "min_crop_area", "cache"):
            if getattr(config, key) is None:
                setattr(config, key, defaults[key])
        if config.learning_rate is None:
            config.learning_rate = DEFAULT_LEARNING_RATES[config.optimizer]
        if config.qat_epochs and config.qat_learning_rate is None:
            config.qat_learning_rate = QAT_LR_FACTOR * config.learning_rate
        if config.loop is None:
            config.loop = "custom" if config.strategy == "multi-worker" else "fit"
        if config.run_name is None:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", self.dataset.split("/")[-1]).strip("-")
            config.run_name = f"{slug}-{config.variant}-{config.input_size}px"
        return config

    def phases(self):
        """(first_epoch, end_epoch, backbone_frozen) per fit call: all epochs, or the
        frozen part then the fine-tuning part; none for QAT alone (`epochs=0`)."""
        if not self.epochs:
            return []
        if self.unfreeze_after:
            return [(0, self.unfreeze_after, True), (self.unfreeze_after, self.epochs, False)]
        return [(0, self.epochs, self.freeze_backbone)]

    def qat_phase(self):
        """(first_epoch, end_epoch) of the quantization-aware phase, numbered after the
        float epochs; None without one."""
        return (self.epochs, self.epochs + self.qat_epochs) if self.qat_epochs else None

    def all_phases(self):
        """(first_epoch, end_epoch) of every phase, float then QAT: the run's backups."""
        qat = self.qat_phase()
        return [phase[:2] for phase in self.phases()] + ([qat] if qat else [])

    def validate(self):
        """Raise a `ValueError` naming the argument for any setting that cannot run."""
        spec_lib.get_variant(self.variant)
        self._check_counts_and_sizes()
        self._check_choices()
        self._check_rates()
        self._check_transfer()
        self._check_destination()
        spec_lib.resolve_widths(self.widths, self.width_multiplier)  # raises on bad widths

    def _check_counts_and_sizes(self):
        if not _is_int(self.qat_epochs) or self.qat_epochs < 0:
            fail("qat_epochs", "an int >= 0", self.qat_epochs)
        qat_alone = self.epochs == 0 and self.qat_epochs and self.init_weights
        if not qat_alone and (not _is_int(self.epochs) or self.epochs < 1):
            fail("epochs", "a positive int (0 only for QAT alone: with qat_epochs and "
                 "init_weights)", self.epochs)
        positive_int("batch_size", self.batch_size)
        positive_int("steps_per_epoch", self.steps_per_epoch, optional=True)
        positive_int("replicas", self.replicas, optional=True)
        positive_int("unfreeze_after", self.unfreeze_after, optional=True)
        if self.input_size is not None:
            positive_int("input_size", self.input_size)
            minimum = spec_lib.min_input_size(self.aux, self.variant)
            if self.input_size < minimum:
                fail("input_size", f">= {minimum} for variant {self.variant!r} "
                     f"{'with' if self.aux else 'without'} aux heads", self.input_size)

    def _check_choices(self):
        one_of("strategy", self.strategy, STRATEGIES)
        if self.loop is not None:
            one_of("loop", self.loop, LOOPS)
        if self.strategy == "multi-worker":
            if self.loop == "fit":
                raise ValueError(
                    "`loop='fit'` cannot run under the multi-worker strategy: Keras 3.15's "
                    "Model.fit fails there; use the default custom loop."
                )
            if self.replicas not in (None, 1):
                fail("replicas", "None under the multi-worker strategy (one replica per "
                     "worker process)", self.replicas)
        if self.qat_epochs and (self.strategy == "multi-worker" or self.loop == "custom"):
            raise ValueError("`qat_epochs` runs with Model.fit only, not under the custom loop "
                             "(nor the multi-worker strategy, which needs it); train QAT alone "
                             "on one host: --init-weights RUN --epochs 0 --qat-epochs N.")
        one_of("precision", self.precision, PRECISIONS)
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        one_of("schedule", self.schedule, SCHEDULES)

    def _check_rates(self):
        positive_number("learning_rate", self.learning_rate, optional=True)
        positive_number("qat_learning_rate", self.qat_learning_rate, optional=True)
        for arg in ("weight_decay", "warmup_epochs"):
            if not getattr(self, arg) >= 0:
                fail(arg, "a number >= 0", getattr(self, arg))
        for arg in ("label_smoothing", "ema_momentum", "bn_momentum"):
            if getattr(self, arg) is not None:
                rate(arg, getattr(self, arg))
        if not self.aux_loss_weight >= 0:
            fail("aux_loss_weight", "a number >= 0", self.aux_loss_weight)
        fraction("val_fraction", self.val_fraction, include_one=False)
        if self.min_crop_area is not None:
            fraction("min_crop_area", self.min_crop_area)

    def _check_transfer(self):
        if self.freeze_backbone and not self.init_weights:
            raise ValueError(
                "`freeze_backbone` needs `init_weights` (a .keras model or run directory to "
                "take the backbone from): a frozen random backbone learns nothing."
            )
        if self.unfreeze_after is not None:
            if not self.freeze_backbone:
                raise ValueError("`unfreeze_after` only makes sense with `freeze_backbone`.")
            if self.unfreeze_after >= self.epochs:
                fail("unfreeze_after", f"less than epochs={self.epochs}", self.unfreeze_after)
        if self.init_weights is not None and not os.path.exists(self.init_weights):
            raise ValueError(f"`init_weights` not found: {self.init_weights!r}.")

    def _check_destination(self):
        separators = [sep for sep in ("/", os.sep, os.altsep) if sep]
        # '..' or '.' would put the run in (or, with --overwrite, empty) a parent directory.
        if not isinstance(self.run_name, (str, type(None))) or (
            self.run_name is not None and (
                self.run_name in ("", ".", "..") or any(s in self.run_name for s in separators))
        ):
            fail("run_name", "a directory name inside --output-dir (not '.' or '..', no '/')",
                 self.run_name)
        # before loading any data, not after the first epoch
        paths.writable_destination(self.output_dir, "output_dir", "--output-dir")
        if self.run_name is not None:  # a symlinked run directory, and any other escape
            run_dir_lib.run_dir_of(self.output_dir, self.run_name)

