"""What a width search depends on (`TuneConfig`, saved as `search.json`) and what it returns."""

from __future__ import annotations

import dataclasses
import os
import re

from keras_googlenet import paths
from keras_googlenet.checks import fraction, one_of, positive_int

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
PARETO_PNG = "pareto.png"
BEST_DIR = "best"
SEARCH_CONFIG = "search.json"
# Settings that may change when a search is resumed; anything else would make the
# finished trials incomparable with the new ones.
RESUMABLE_CHANGES = {"max_trials", "replicas", "precision", "overwrite", "directory"}
# What a search writes in its project directory; `--overwrite` replaces these and keeps
# every other entry (the user's own files).
OWNED_ENTRIES = {RESULTS_CSV, RESULTS_MD, PARETO_PNG, BEST_DIR, SEARCH_CONFIG, "executions",
                 "logs", "oracle.json"}
_OWNED_PATTERN = re.compile(r"(trial_\w+|chief\.json|tuner\d*\.json)")


def is_owned(name):
    """Whether the project-directory entry `name` is one a search writes."""
    return name in OWNED_ENTRIES or _OWNED_PATTERN.fullmatch(name) is not None


class SearchFailedError(RuntimeError):
    """The search stopped because its trials crashed."""


class NoScoreError(SearchFailedError):
    """The search ended without any trial producing a score."""


@dataclasses.dataclass
class TuneConfig:
    """Everything a search depends on; saved as `search.json` in the project directory."""

    dataset: str = "digits"
    data_dir: str | None = None
    val_fraction: float = 0.2
    tuner: str = "random"
    max_trials: int = 10
    epochs: int = 2  # per trial; Hyperband's max_epochs
    steps_per_epoch: int | None = None  # None: one pass over the training split
    validation_steps: int | None = None  # None: the whole validation split
    batch_size: int = 32  # per replica
    input_size: int | None = None  # None: 80 for digits, else 224
    aux: bool = True
    variants: tuple = ("v1_bn",)
    width_multiplier: float = 1.0
    stage_multipliers: tuple = (0.5, 0.75, 1.0)
    reduce_ratios: tuple = (0.5, 0.75, 1.0)
    dropout: tuple = (0.4,)
    learning_rate: tuple = (2e-3,)
    max_macs: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    latency_precision: str = "float32"
    latency_threads: int = 1
    precision: str = "auto"
    replicas: int | None = None
    seed: int = 0
    directory: str = "tuning"
    project_name: str = "googlenet"
    overwrite: bool = False

    def validate(self):
        from keras_googlenet.tuning import TUNERS
        from keras_googlenet_training.precision import PRECISIONS

        one_of("tuner", self.tuner, TUNERS)
        one_of("precision", self.precision, PRECISIONS)
        for arg in ("max_trials", "epochs", "batch_size", "latency_threads"):
            positive_int(arg, getattr(self, arg))
        for arg in ("steps_per_epoch", "validation_steps", "input_size", "replicas"):
            positive_int(arg, getattr(self, arg), optional=True)
        fraction("val_fraction", self.val_fraction, include_one=False)
        self._check_destination()

    def _check_destination(self):
        """`directory` must be (or go under) a writable directory and `project_name` one
        name inside it; writes nothing, so a refused command changes nothing."""
        paths.writable_destination(self.directory, "directory", "--directory")
        from keras_googlenet.publish import staging_path

        project = paths.child_path(self.directory, self.project_name, "project_name")
        paths.refuse_symlink(staging_path(project), "project_name")
        if os.path.lexists(project) and not os.path.isdir(project):
            raise ValueError(f"`project_name` (--project-name {self.project_name}): {project} is "
                             "a file, not a search directory.")

    def resolved(self):
        """A copy with the dataset defaults filled in (input size, flips, crop area)."""
        from keras_googlenet_training.data import dataset_defaults

        self.validate()
        config = dataclasses.replace(self)
        for arg in ("variants", "stage_multipliers", "reduce_ratios", "dropout", "learning_rate"):
            value = getattr(config, arg)
            setattr(config, arg, tuple(value) if isinstance(value, (list, tuple)) else (value,))
        if config.input_size is None:
            config.input_size = dataset_defaults(config.dataset)["input_size"]
        return config


@dataclasses.dataclass
class SearchResult:
    role: str  # "standalone", "chief" or "worker"
    project_dir: str
    records: list = dataclasses.field(default_factory=list)
    best: dict | None = None
    trials_run: int = 0  # trials this process trained or rejected
    paths: dict = dataclasses.field(default_factory=dict)


def project_dir(config):
    """`<directory>/<project_name>`; a name that would leave `directory` is refused."""
    return paths.child_path(config.directory, config.project_name, "project_name")


def work_dir(config):
    """Where this search writes: the project directory or, with `overwrite`, the sibling
    its replacement is built in (swapped in only once the new search has finished)."""
    from keras_googlenet.publish import staging_path

    directory = project_dir(config)
    if not config.overwrite:
        return directory
    return os.path.join(config.directory, os.path.basename(staging_path(directory)))


def check_resumable(path, record):
    """Refuse to continue the search saved at `path` (`search.json`) with other settings:
    the finished trials would not be comparable with the new ones."""
    from keras_googlenet_training.run_dir import changed_settings

    changed = changed_settings(path, record, ignore=RESUMABLE_CHANGES)
    if changed:
        raise ValueError(
            f"{os.path.dirname(path)} holds a search with other settings "
            f"({', '.join(changed)}); re-run with the same arguments to continue it, pass "
            "--overwrite to start afresh, or choose another --project-name."
        )


def make_hypermodel(config, classes):
    from keras_googlenet.tuning import GoogLeNetHyperModel

    return GoogLeNetHyperModel(
        input_shape=(config.input_size, config.input_size, 3),
        classes=classes,
        include_aux=config.aux,
        variants=config.variants,
        width_multiplier=config.width_multiplier,
        stage_multipliers=config.stage_multipliers,
        reduce_ratios=config.reduce_ratios,
        dropout=config.dropout,
        learning_rate=config.learning_rate,
        max_macs=config.max_macs,
        max_params=config.max_params,
        max_latency_ms=config.max_latency_ms,
        latency_precision=config.latency_precision,
        latency_threads=config.latency_threads,
    )
