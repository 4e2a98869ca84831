"""The width search behind `googlenet-tune`: data, tuner, results table, best model, launcher.

`run_search(TuneConfig(...))` runs in this process, or as one role of a distributed
search when KerasTuner's variables are set (`KERASTUNER_TUNER_ID` = `chief` or
`tuner0`, `tuner1`, ...; `KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`). The chief
serves the oracle and writes the results; workers train. `launch_local` starts a chief
and N workers on 127.0.0.1.

The heavy imports (KerasTuner, the data pipeline) happen inside the functions, and the
launcher never runs a TensorFlow op, so it leaves the devices to its children.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

logger = logging.getLogger("keras_googlenet.training")

TUNE_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
PARETO_PNG = "pareto.png"
BEST_DIR = "best"
SEARCH_CONFIG = "search.json"
# Settings that may change when a search is resumed; anything else would make the
# finished trials incomparable with the new ones.
RESUMABLE_CHANGES = {"max_trials", "replicas", "precision", "overwrite", "directory"}


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

        def fail(arg, allowed, value):
            raise ValueError(f"`{arg}` must be {allowed}; received {arg}={value!r}.")

        def positive_int(arg, optional=False):
            value = getattr(self, arg)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(arg, "a positive int" + (" or None" if optional else ""), value)

        if self.tuner not in TUNERS:
            fail("tuner", f"one of {TUNERS}", self.tuner)
        if self.precision not in PRECISIONS:
            fail("precision", f"one of {PRECISIONS}", self.precision)
        for arg in ("max_trials", "epochs", "batch_size", "latency_threads"):
            positive_int(arg)
        for arg in ("steps_per_epoch", "validation_steps", "input_size", "replicas"):
            positive_int(arg, optional=True)
        if not 0 < self.val_fraction < 1:
            fail("val_fraction", "in (0, 1)", self.val_fraction)
        if not self.project_name or "/" in self.project_name:
            fail("project_name", "a non-empty name without '/'", self.project_name)

    def resolved(self):
        """A copy with the dataset defaults filled in (input size, flips, crop area)."""
        from keras_googlenet_training.train import DATASET_DEFAULTS, GENERIC_DEFAULTS

        self.validate()
        config = dataclasses.replace(self)
        for arg in ("variants", "stage_multipliers", "reduce_ratios", "dropout", "learning_rate"):
            value = getattr(config, arg)
            setattr(config, arg, tuple(value) if isinstance(value, (list, tuple)) else (value,))
        if config.input_size is None:
            config.input_size = DATASET_DEFAULTS.get(config.dataset, GENERIC_DEFAULTS)[
                "input_size"]
        return config


@dataclasses.dataclass
class SearchResult:
    role: str  # "standalone", "chief" or "worker"
    project_dir: str
    records: list = dataclasses.field(default_factory=list)
    best: dict | None = None
    trials_run: int = 0  # trials this process trained or rejected
    paths: dict = dataclasses.field(default_factory=dict)


def distributed_role():
    """`"standalone"`, `"chief"` or `"worker"`, from KerasTuner's environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "standalone"
    missing = [name for name in TUNE_ENV if name not in os.environ]
    if missing:
        raise ValueError(
            f"KERASTUNER_ORACLE_IP is set but {', '.join(missing)} is not: a distributed "
            "search needs all of " + ", ".join(TUNE_ENV) + "."
        )
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def project_dir(config):
    return os.path.join(config.directory, config.project_name)


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


def _check_resume_matches(path, record):
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)

    def canonical(value):
        return json.dumps(value, sort_keys=True, default=str)

    changed = sorted(
        k for k in record
        if k not in RESUMABLE_CHANGES and canonical(saved.get(k)) != canonical(record[k])
    )
    if changed:
        raise ValueError(
            f"{os.path.dirname(path)} holds a search with other settings "
            f"({', '.join(changed)}); re-run with the same arguments to continue it, pass "
            "--overwrite to start afresh, or choose another --project-name."
        )


def _datasets(config, splits, global_batch):
    from keras_googlenet_training import data as data_lib
    from keras_googlenet_training.train import DATASET_DEFAULTS, GENERIC_DEFAULTS

    defaults = DATASET_DEFAULTS.get(config.dataset, GENERIC_DEFAULTS)
    # The pipeline's preprocessing is the same ("tf" mode) for every variant.
    common = dict(input_size=config.input_size, variant=config.variants[0], seed=config.seed,
                  cache=defaults["cache"])
    train_ds = data_lib.make_pipeline(
        splits.train, batch_size=global_batch, training=True, flip=defaults["flip"],
        area_range=(defaults["min_crop_area"], 1.0), **common,
    ).repeat()
    val_ds = data_lib.make_pipeline(splits.val, batch_size=global_batch, training=False,
                                    **common)
    if config.validation_steps:
        val_ds = val_ds.take(config.validation_steps)
    return train_ds, val_ds


def run_search(config: TuneConfig, log=print, callbacks=None) -> SearchResult:
    """Run (or continue) a width search as `config` says; write the results when done.

    Re-running the same call continues an interrupted search: finished trials are
    reloaded, not retrained, and an interrupted trial runs again. In a distributed
    search (KerasTuner's environment variables set) the chief serves the oracle and
    writes the results, workers train; `callbacks` are extra Keras callbacks for every
    trial.

    Raises:
        ValueError: bad settings, or a project holding a search with other settings.
        NoScoreError: the search ended and no trial produced a score (every candidate
            was over budget, or every trial crashed).
        SearchFailedError: KerasTuner stopped the search after consecutive crashes.
    """
    config = config.resolved()
    role = distributed_role()
    directory = project_dir(config)

    # Devices first: logical CPU replicas can only be made before TF initialises.
    from keras_googlenet_training.distribute import make_strategy

    strategy = make_strategy(config.replicas) if role != "chief" else None
    import keras

    from keras_googlenet import tuning
    from keras_googlenet_training import data as data_lib
    from keras_googlenet_training import run_dir as run_dir_lib
    from keras_googlenet_training.precision import apply_precision, select_precision

    policy = apply_precision(select_precision(config.precision))
    keras.utils.set_random_seed(config.seed)

    record = dataclasses.asdict(config)
    if role != "worker":
        if config.overwrite and os.path.isdir(directory):
            shutil.rmtree(directory)
        _check_resume_matches(os.path.join(directory, SEARCH_CONFIG), record)
        run_dir_lib.write_json(os.path.join(directory, SEARCH_CONFIG), record)

    splits = data_lib.load_dataset(config.dataset, data_dir=config.data_dir, seed=config.seed,
                                   val_fraction=config.val_fraction)
    hypermodel = make_hypermodel(config, splits.num_classes)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    global_batch = config.batch_size * replicas
    steps = splits.num_train // global_batch
    if steps < 1:
        raise ValueError(
            f"`batch_size`: the global batch {global_batch} exceeds the {splits.num_train} "
            "training images."
        )
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)

    tuner = tuning.make_tuner(
        config.tuner, hypermodel, max_trials=config.max_trials, max_epochs=config.epochs,
        directory=config.directory, project_name=config.project_name, seed=config.seed,
        # None, not the default strategy: KerasTuner then builds outside any scope.
        distribution_strategy=strategy if replicas > 1 else None,
        overwrite=False,  # handled above, once, by the chief
    )
    before = _executions(directory, tuner.tuner_id)
    done = [] if role == "worker" else [
        t for t in tuner.oracle.trials.values() if t.status in ("COMPLETED", "FAILED")]
    log(
        f"{role} {tuner.tuner_id if role != 'standalone' else ''} search {directory}"
        f"{f' (resuming: {len(done)} finished trial(s) kept)' if done else ''}: "
        f"{config.tuner}, max {config.max_trials} trials x {config.epochs} epoch(s) x "
        f"{steps} steps; {splits.source} ({splits.num_train} train / {splits.num_val} val, "
        f"{splits.num_classes} classes) at {config.input_size}px; precision {policy}; "
        f"{replicas} replica(s) x {config.batch_size}; budget "
        f"{_budget_text(hypermodel.budget)}"
    )
    try:
        if role == "chief":
            tuner.search()
        else:
            train_ds, val_ds = _datasets(config, splits, global_batch)
            tuner.search(train_ds, validation_data=val_ds, epochs=config.epochs,
                         steps_per_epoch=steps, callbacks=list(callbacks or []), verbose=2)
    except RuntimeError as error:
        if "consecutive failures" not in str(error) or role == "worker":
            raise
        # KerasTuner gave up after max_consecutive_failed_trials crashes in a row.
        write_results(tuning.trial_records(tuner.oracle, hypermodel), directory,
                      hypermodel.budget)
        raise SearchFailedError(
            f"the search stopped: {str(error).splitlines()[0]} (tracebacks above). Results so "
            f"far: {os.path.join(directory, RESULTS_MD)}"
        ) from None
    trials_run = len(_executions(directory, tuner.tuner_id)) - len(before)
    if role == "worker":
        log(f"worker {tuner.tuner_id} done: ran {trials_run} trial(s)")
        return SearchResult(role=role, project_dir=directory, trials_run=trials_run)

    records = tuning.trial_records(tuner.oracle, hypermodel)
    paths = write_results(records, directory, hypermodel.budget)
    scored = [r for r in records if r["status"] == "completed"]
    if not scored:
        raise NoScoreError(_no_score_message(records, directory))
    best = max(scored, key=lambda r: r[tuning.OBJECTIVE.name])
    paths["best_model"] = save_best_model(tuner, hypermodel, best, splits, config, directory)
    log(paths["markdown_text"])
    log(
        f"best: trial {best['trial']} val_main_accuracy {best['val_main_accuracy']:.4f}, "
        f"{best['macs'] / 1e6:,.1f} MMACs, {best['params']:,} params -> {paths['best_model']}"
    )
    return SearchResult(role=role, project_dir=directory, records=records, best=best,
                        trials_run=trials_run, paths=paths)


def _budget_text(budget):
    parts = []
    if budget.max_macs is not None:
        parts.append(f"MACs <= {budget.max_macs / 1e6:,.1f}M")
    if budget.max_params is not None:
        parts.append(f"params <= {budget.max_params / 1e6:,.3f}M")
    if budget.max_latency_ms is not None:
        parts.append(f"{budget.latency_precision} TFLite latency <= {budget.max_latency_ms:g} ms "
                     f"({budget.latency_threads} thread(s))")
    return ", ".join(parts) or "none"


def _executions(directory, tuner_id):
    from keras_googlenet.tuning import EXECUTIONS_DIR

    path = os.path.join(directory, EXECUTIONS_DIR, f"{tuner_id}.jsonl")
    return read_executions(path)


def read_executions(path):
    """The records of `executions/<tuner_id>.jsonl` (or of every file in a directory)."""
    if os.path.isdir(path):
        return [r for name in sorted(os.listdir(path)) if name.endswith(".jsonl")
                for r in read_executions(os.path.join(path, name))]
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _no_score_message(records, directory):
    counts = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"
    if records and all(r["status"] == "rejected" for r in records):
        cheapest = min(records, key=lambda r: r["macs"] or math.inf)
        return (
            f"no trial produced a score: every candidate was over budget ({summary}); the "
            f"cheapest had {cheapest['macs'] / 1e6:,.1f} MMACs and {cheapest['params']:,} "
            "params. Raise the budget or search smaller widths. Results: "
            f"{os.path.join(directory, RESULTS_MD)}"
        )
    failed = [r for r in records if r["status"] == "failed"]
    reason = f" Last error: {failed[-1]['note']}" if failed and failed[-1]["note"] else ""
    return (
        f"no trial produced a score ({summary}): KerasTuner catches an exception inside a "
        f"trial, prints its traceback (above, or in the worker logs) and moves on.{reason} "
        f"Results: {os.path.join(directory, RESULTS_MD)}"
    )


# ---------------------------------------------------------------------- results

TABLE_COLUMNS = ("trial", "status", "val_main_accuracy", "macs", "params", "latency_ms",
                 "seconds", "stage3", "stage4", "stage5", "reduce_3x3", "reduce_5x5",
                 "variant", "dropout", "learning_rate", "widths", "note")


def _widths_text(widths):
    return " ".join(f"{block}:{'/'.join(str(v) for v in cols)}" for block, cols in widths.items())


def _cell(name, value):
    if value is None:
        return ""
    if name == "widths":
        return _widths_text(value)
    if name == "val_main_accuracy":
        return f"{value:.4f}"
    if name == "macs":
        return f"{value / 1e6:,.1f}M"
    if name == "params":
        return f"{value / 1e6:,.3f}M"
    if name in ("latency_ms", "seconds"):
        return f"{value:.2f}" if name == "latency_ms" else f"{value:.0f}"
    if name == "learning_rate":
        return f"{value:.2g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "/")


def format_markdown(records, front=()):
    """The results as a markdown table; Pareto-optimal trials are marked with *."""
    columns = [c for c in TABLE_COLUMNS
               if c != "latency_ms" or any(r["latency_ms"] is not None for r in records)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in records:
        cells = [_cell(c, r[c]) for c in columns]
        if r["trial"] in front:
            cells[0] += "*"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(records, directory, budget=None):
    """Write `results.csv`, `results.md` and `pareto.png`; return their paths."""
    from keras_googlenet.tuning import pareto_front
    from keras_googlenet_training import run_dir as run_dir_lib

    front = pareto_front(records)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*TABLE_COLUMNS, "pareto"])
    writer.writeheader()
    for r in records:
        writer.writerow({**r, "widths": json.dumps(r["widths"]), "pareto": r["trial"] in front})
    csv_path = os.path.join(directory, RESULTS_CSV)
    run_dir_lib.write_text(csv_path, buffer.getvalue())
    markdown = format_markdown(records, front)
    counts = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    md_path = os.path.join(directory, RESULTS_MD)
    run_dir_lib.write_text(md_path, (
        f"# Width search: {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}\n\n"
        f"MACs and params are those of the inference model (aux heads dropped); * marks "
        f"the Pareto front of accuracy against MACs.\n\n{markdown}\n"
    ))
    png_path = os.path.join(directory, PARETO_PNG)
    plot_pareto(records, png_path, front, budget)
    return {"csv": csv_path, "markdown": md_path, "pareto": png_path, "markdown_text": markdown}


def plot_pareto(records, path, front=None, budget=None):
    """Accuracy against MACs: every scored trial, the Pareto front, rejected candidates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import transforms

    from keras_googlenet.tuning import pareto_front
    from keras_googlenet_training import run_dir as run_dir_lib

    front = pareto_front(records) if front is None else front
    done = [r for r in records if r["status"] == "completed"]
    rejected = [r for r in records if r["status"] == "rejected" and r["macs"] is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([r["macs"] / 1e6 for r in done], [r["val_main_accuracy"] for r in done],
               color="tab:blue", label="trained", zorder=3)
    on_front = sorted((r for r in done if r["trial"] in front), key=lambda r: r["macs"])
    if on_front:
        ax.step([r["macs"] / 1e6 for r in on_front], [r["val_main_accuracy"] for r in on_front],
                where="post", color="tab:red", zorder=2)
        ax.scatter([r["macs"] / 1e6 for r in on_front],
                   [r["val_main_accuracy"] for r in on_front], s=90, facecolors="none",
                   edgecolors="tab:red", linewidths=1.5, label="Pareto front", zorder=4)
    for r in done:
        ax.annotate(r["trial"], (r["macs"] / 1e6, r["val_main_accuracy"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    if rejected:
        # along the bottom edge: they have no accuracy, and y=0 would squash the rest
        bottom = transforms.blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter([r["macs"] / 1e6 for r in rejected], [0.03] * len(rejected), marker="x",
                   color="grey", transform=bottom, label="rejected (over budget)", zorder=3)
    if budget is not None and budget.max_macs is not None:
        ax.axvline(budget.max_macs / 1e6, color="grey", linestyle="--", label="max_macs")
    xs = [r["macs"] / 1e6 for r in done + rejected]
    if budget is not None and budget.max_macs is not None:
        xs.append(budget.max_macs / 1e6)
    if xs:  # markers on a blended transform and vertical lines do not autoscale
        margin = 0.05 * (max(xs) - min(xs) or max(xs))
        ax.set_xlim(min(xs) - margin, max(xs) + margin)
    ax.set_xlabel("MACs per image (millions, inference model)")
    ax.set_ylabel("val_main_accuracy")
    ax.set_title("GoogLeNet width search: accuracy vs compute")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with run_dir_lib.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def save_best_model(tuner, hypermodel, best, splits, config, directory):
    """The best trial's float32 inference model, as a run directory `googlenet-export` reads."""
    import keras

    import keras_googlenet as kg
    from keras_googlenet.tuning import OBJECTIVE
    from keras_googlenet_training import run_dir as run_dir_lib

    trial = tuner.oracle.get_trial(best["trial"])
    with warnings.catch_warnings():
        # The checkpoint holds optimizer slots the fresh model does not need.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model = tuner.load_model(trial)
    inference = kg.float32_inference_model(model, name=f"googlenet_trial_{best['trial']}")
    out = os.path.join(directory, BEST_DIR)
    path = os.path.join(out, "inference.keras")
    run_dir_lib.save_keras(inference, path)
    hp = trial.hyperparameters.copy()
    build = hypermodel.build_kwargs(hp)
    run_dir_lib.write_json(os.path.join(out, "config.json"), {
        "trial": best["trial"],
        "hyperparameters": hypermodel.values(hp),
        "dataset": config.dataset,
        "data_dir": config.data_dir,
        "class_names": splits.class_names,
        "model": {
            "variant": build["variant"], "input_size": config.input_size,
            "classes": build["classes"], "widths": {k: list(v) for k, v in build["widths"].items()},
            "width_multiplier": build["width_multiplier"], "include_aux": config.aux,
            "dropout": build["dropout"], "resolved_widths": best["widths"],
            "preprocessing": kg.VARIANTS[build["variant"]].preprocessing,
        },
        "search": dataclasses.asdict(config),
        "versions": {"keras": keras.__version__},
    })
    run_dir_lib.write_text(os.path.join(out, "labels.txt"), "\n".join(splits.class_names) + "\n")
    run_dir_lib.write_json(os.path.join(out, "metrics.json"), {
        OBJECTIVE.name: best[OBJECTIVE.name], "macs": best["macs"], "params": best["params"],
        "latency_ms": best["latency_ms"], "trial": best["trial"],
    })
    return path


# ---------------------------------------------------------------------- local launcher


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _pump(stream, prefix, out):
    for line in iter(stream.readline, ""):
        out.write(f"{prefix}{line}")
        out.flush()
    stream.close()


def _stop(processes, grace=5.0):
    """Terminate our children (by pid), then kill whichever did not exit in `grace` s."""
    for p in processes:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in processes:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _tail(path, lines=20):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def launch_local(child_args, workers, directory, project_name, out=None, host="127.0.0.1",
                 worker_grace=120.0, stop_grace=30.0):
    """Run a distributed search here: a chief and `workers` workers on `host`.

    `child_args` are `googlenet-tune` arguments without `--workers`. The chief's output
    is streamed to `out`; each worker logs to `<project>/logs/<tuner_id>.log`. If any
    process fails, or on Ctrl-C/SIGTERM, every child is stopped. Returns an exit code.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be a positive int; received workers={workers!r}.")
    out = out or sys.stdout
    port = free_port(host)
    logs = os.path.join(directory, project_name, "logs")
    os.makedirs(logs, exist_ok=True)
    base_env = {k: v for k, v in os.environ.items() if k not in TUNE_ENV}
    base_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    base_env["PYTHONUNBUFFERED"] = "1"
    # Workers share the cores: without this each would start a thread per core.
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    command = [sys.executable, "-m", "keras_googlenet_training.cli.tune", *child_args]
    processes, log_files, pumps = [], [], []

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        env = {**base_env, "KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": host,
               "KERASTUNER_ORACLE_PORT": str(port)}
        chief = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        processes.append(chief)
        pump = threading.Thread(target=_pump, args=(chief.stdout, "[chief] ", out), daemon=True)
        pump.start()
        pumps.append(pump)
        named = {}
        for index in range(workers):
            tuner_id = f"tuner{index}"
            log_path = os.path.join(logs, f"{tuner_id}.log")
            log_file = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
            log_files.append(log_file)
            worker_env = {**env, "KERASTUNER_TUNER_ID": tuner_id}
            worker_env.setdefault("TF_NUM_INTRAOP_THREADS", threads)
            worker_env.setdefault("TF_NUM_INTEROP_THREADS", "1")
            worker = subprocess.Popen(command, env=worker_env, stdout=log_file,
                                      stderr=subprocess.STDOUT, text=True)
            processes.append(worker)
            named[worker.pid] = (tuner_id, log_path)
        out.write(f"launched chief (oracle on {host}:{port}) and {workers} worker(s), pids "
                  f"{[p.pid for p in processes]}; worker logs in {logs}\n")
        out.flush()

        workers_done_at = None
        while True:
            code = chief.poll()
            if code is not None:
                if code != 0:
                    out.write(f"chief exited with code {code}; stopping the workers\n")
                    return code
                # The chief only ends once no trial is running; a worker still alive then
                # never got a trial (it started late) and waits for a chief that is gone.
                deadline, idle = time.monotonic() + stop_grace, set()
                for p in processes[1:]:
                    try:
                        p.wait(timeout=max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        out.write(f"{named[p.pid][0]} got no trial before the search ended; "
                                  "stopping it\n")
                        p.terminate()
                        p.wait()
                        idle.add(p.pid)
                failed = [p for p in processes[1:] if p.returncode != 0 and p.pid not in idle]
                for p in failed:
                    tuner_id, log_path = named[p.pid]
                    out.write(f"{tuner_id} exited with code {p.returncode}:\n{_tail(log_path)}")
                return 1 if failed else 0
            for p in processes[1:]:
                if p.poll() not in (None, 0):
                    tuner_id, log_path = named[p.pid]
                    out.write(f"{tuner_id} failed with code {p.returncode}; stopping the search. "
                              f"Last lines of {log_path}:\n{_tail(log_path)}")
                    return p.returncode
            if all(p.poll() == 0 for p in processes[1:]):
                workers_done_at = workers_done_at or time.monotonic()
                if time.monotonic() - workers_done_at > worker_grace:
                    out.write("the workers finished but the chief did not; stopping it\n")
                    return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        out.write("interrupted: stopping the chief and the workers (re-run to resume)\n")
        return 130
    finally:
        _stop(processes)
        for pump in pumps:
            pump.join(timeout=5)
        for log_file in log_files:
            log_file.close()
        signal.signal(signal.SIGTERM, previous)
