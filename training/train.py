"""Train GoogLeNet with its auxiliary heads: the library function behind `googlenet-train`."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import re
import shutil
import sys
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

import keras_googlenet as kg
from keras_googlenet import spec as spec_lib
from keras_googlenet.googlenet import set_batch_norm_momentum
from keras_googlenet_training import callbacks as callbacks_lib
from keras_googlenet_training import multiworker
from keras_googlenet_training import run_dir as run_dir_lib
from keras_googlenet_training.distribute import make_strategy
from keras_googlenet_training.precision import PRECISIONS, apply_precision, select_precision

logger = logging.getLogger("keras_googlenet.training")

OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("mirrored", "multi-worker")
LOOPS = ("fit", "custom")
SCHEDULES = ("cosine", "paper", "constant")
DEFAULT_LEARNING_RATES = {"adam": 2e-3, "sgd": 0.05}
# Small images need neither 224 px nor flips (a mirrored digit is another digit), and the
# paper's 8 % crops would cut most of a digit away.
DATASET_DEFAULTS = {
    "digits": {"input_size": 80, "flip": False, "min_crop_area": 0.7, "cache": True},
}
# Caching decoded images in memory only pays (and fits) for small datasets.
GENERIC_DEFAULTS = {"input_size": 224, "flip": True, "min_crop_area": 0.08, "cache": False}
HEAD_LAYER_PREFIXES = ("predictions", "aux1_", "aux2_")
# Fine-tuning after --unfreeze-after restarts the optimizer at this fraction of the LR.
FINE_TUNE_LR_FACTOR = 0.1


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
    epochs: int = 8
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
    init_weights: str | None = None
    freeze_backbone: bool = False
    unfreeze_after: int | None = None
    run_name: str | None = None
    output_dir: str = "saved_models"
    overwrite: bool = False

    def resolved(self):
        """A copy with dataset-dependent defaults filled in, after validation."""
        self.validate()
        defaults = DATASET_DEFAULTS.get(self.dataset, GENERIC_DEFAULTS)
        config = dataclasses.replace(self)
        for key in ("input_size", "flip", "min_crop_area", "cache"):
            if getattr(config, key) is None:
                setattr(config, key, defaults[key])
        if config.learning_rate is None:
            config.learning_rate = DEFAULT_LEARNING_RATES[config.optimizer]
        if config.loop is None:
            config.loop = "custom" if config.strategy == "multi-worker" else "fit"
        if config.run_name is None:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", self.dataset.split("/")[-1]).strip("-")
            config.run_name = f"{slug}-{config.variant}-{config.input_size}px"
        return config

    def validate(self):
        def fail(arg, allowed, value):
            raise ValueError(f"`{arg}` must be {allowed}; received {arg}={value!r}.")

        def positive_int(arg, value, optional=False):
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(arg, "a positive int" + (" or None" if optional else ""), value)

        spec_lib.get_variant(self.variant)
        positive_int("epochs", self.epochs)
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
        if self.strategy not in STRATEGIES:
            fail("strategy", f"one of {STRATEGIES}", self.strategy)
        if self.loop is not None and self.loop not in LOOPS:
            fail("loop", f"one of {LOOPS}", self.loop)
        if self.strategy == "multi-worker":
            if self.loop == "fit":
                raise ValueError(
                    "`loop='fit'` cannot run under the multi-worker strategy: Keras 3.15's "
                    "Model.fit fails there; use the default custom loop."
                )
            if self.replicas not in (None, 1):
                fail("replicas", "None under the multi-worker strategy (one replica per "
                     "worker process)", self.replicas)
        if self.precision not in PRECISIONS:
            fail("precision", f"one of {PRECISIONS}", self.precision)
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"one of {OPTIMIZERS}", self.optimizer)
        if self.schedule not in SCHEDULES:
            fail("schedule", f"one of {SCHEDULES}", self.schedule)
        if self.learning_rate is not None and not self.learning_rate > 0:
            fail("learning_rate", "a positive number", self.learning_rate)
        for arg in ("weight_decay", "warmup_epochs"):
            if not getattr(self, arg) >= 0:
                fail(arg, "a number >= 0", getattr(self, arg))
        for arg in ("label_smoothing", "ema_momentum", "bn_momentum"):
            value = getattr(self, arg)
            if value is not None and not 0 <= value < 1:
                fail(arg, "in [0, 1)", value)
        if not self.aux_loss_weight >= 0:
            fail("aux_loss_weight", "a number >= 0", self.aux_loss_weight)
        if not 0 < self.val_fraction < 1:
            fail("val_fraction", "in (0, 1)", self.val_fraction)
        if self.min_crop_area is not None and not 0 < self.min_crop_area <= 1:
            fail("min_crop_area", "in (0, 1]", self.min_crop_area)
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
        separators = [sep for sep in ("/", os.sep, os.altsep) if sep]
        # '..' or '.' would put the run in (or, with --overwrite, empty) a parent directory.
        if not isinstance(self.run_name, (str, type(None))) or (
            self.run_name is not None and (
                self.run_name in ("", ".", "..") or any(s in self.run_name for s in separators))
        ):
            fail("run_name", "a directory name inside --output-dir (not '.' or '..', no '/')",
                 self.run_name)
        if not isinstance(self.output_dir, (str, os.PathLike)) or not os.fspath(self.output_dir):
            fail("output_dir", "a directory path", self.output_dir)
        existing = os.path.abspath(self.output_dir)
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise ValueError(f"`output_dir` {os.fspath(self.output_dir)!r}: {existing} is a file, "
                             "not a directory.")
        kg.spec.resolve_widths(self.widths, self.width_multiplier)  # raises on bad widths


def _quiet(*_args, **_kwargs):
    pass


@dataclasses.dataclass
class TrainResult:
    run_dir: str
    metrics: dict
    model: keras.Model


def _learning_rate(config, steps_per_epoch, epochs, base_lr):
    total = max(1, steps_per_epoch * epochs)
    if config.schedule == "constant":
        return base_lr
    if config.schedule == "paper":
        # "decreasing the learning rate by 4% every 8 epochs" (paper, Section 6)
        return keras.optimizers.schedules.ExponentialDecay(
            base_lr, decay_steps=8 * steps_per_epoch, decay_rate=0.96, staircase=True
        )
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, warmup_target=base_lr, warmup_steps=warmup
        )
    return keras.optimizers.schedules.CosineDecay(base_lr, decay_steps=total)


def ema_momentum_for(total_steps):
    """Average over about the last 5 % of training (at least 10 steps).

    Keras' EMA has no warm-up: with a fixed 0.99-0.9999 a short run would be evaluated
    on weights dominated by its first, poor steps (measured on digits: 30 % val accuracy
    with 0.99 after 176 steps, 99 % with 0.9).
    """
    window = max(10.0, total_steps / 20)
    return min(1.0 - 1.0 / window, 0.9999)


def _optimizer(config, learning_rate, total_steps):
    common = dict(
        learning_rate=learning_rate,
        weight_decay=config.weight_decay or None,
        use_ema=config.ema,
        ema_momentum=(
            config.ema_momentum if config.ema_momentum is not None
            else ema_momentum_for(total_steps)
        ),
    )
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=0.9, **common)
    return keras.optimizers.Adam(**common)


def is_head_layer(layer):
    return layer.name.startswith(HEAD_LAYER_PREFIXES)


def set_backbone_trainable(model, trainable):
    """Freeze or unfreeze everything but the classifier heads.

    A frozen BatchNormalization layer runs in inference mode in Keras 3, so its moving
    statistics stay those of the source model (a frozen BN in training mode would
    normalise with the new dataset's batch statistics and ruin accuracy).
    """
    for layer in model.layers:
        if not is_head_layer(layer):
            layer.trainable = trainable


def transfer_weights(source, target):
    """Copy weights layer by layer (by name). Heads whose class count changed start fresh.

    Returns the names of the layers that were not copied.
    """
    skipped = []
    source_layers = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        origin = source_layers.get(layer.name)
        shapes_match = origin is not None and [w.shape for w in origin.weights] == [
            w.shape for w in layer.weights
        ]
        if shapes_match:
            layer.set_weights(origin.get_weights())
        elif is_head_layer(layer):
            skipped.append(layer.name)
        else:
            raise ValueError(
                f"`init_weights`: backbone layer {layer.name!r} is missing or has other shapes "
                "in the source model; the source must be a GoogLeNet of the same variant, "
                "widths and input channels."
            )
    return skipped


def _load_source_model(path):
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not path.endswith(".keras") or not os.path.isfile(path):
        raise ValueError(
            f"`init_weights` must be a .keras model or a run directory holding model.keras; "
            f"received {path!r}."
        )
    from keras_googlenet.runtime import load_keras_model

    return load_keras_model(path, "init_weights")


def _phases(config):
    """(first_epoch, end_epoch, backbone_frozen) per fit call."""
    if config.unfreeze_after:
        return [(0, config.unfreeze_after, True), (config.unfreeze_after, config.epochs, False)]
    return [(0, config.epochs, config.freeze_backbone)]


def _weights_spread_across_workers(model, strategy):
    """Gather a fingerprint of every worker's trainable weights; 0.0 when all agree."""
    fingerprint = tf.constant(
        [[float(np.sum(np.asarray(w.numpy(), dtype="float64"))) for w in model.trainable_weights]],
        dtype="float64",
    )
    per_replica = strategy.experimental_distribute_values_from_function(lambda _: fingerprint)
    gathered = strategy.gather(per_replica, axis=0).numpy()
    return float(np.max(np.abs(gathered - gathered[0])))


def _build_model(config, num_classes):
    model = kg.GoogLeNet(
        include_aux=config.aux,
        variant=config.variant,
        input_shape=(config.input_size, config.input_size, 3),
        classes=num_classes,
        widths=config.widths,
        width_multiplier=config.width_multiplier,
        dropout=config.dropout,
    )
    return set_batch_norm_momentum(model, config.bn_momentum)


def _config_record(config, extra):
    record = dataclasses.asdict(config)
    record.update(extra)
    return record


def _check_resume_matches(run_dir, record, overwrite=False):
    """True when the unfinished run in `run_dir` is to start over with new settings: it
    diverged, completed no epoch, or `overwrite` was asked. Raises if it must be resumed."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return False
    try:
        with open(path) as f:
            saved = json.load(f)
    except ValueError:
        saved = {}  # a config.json cut short: nothing trustworthy to resume against
    ignore = {"overwrite", "versions", "command"}

    def canonical(value):
        return json.dumps(value, default=str, sort_keys=True)

    changed = sorted(
        k for k in record if k not in ignore and canonical(saved.get(k)) != canonical(record[k])
    )
    if not changed:
        return False
    diverged = os.path.exists(os.path.join(run_dir, run_dir_lib.DIVERGED_MARKER))
    if diverged or overwrite or not run_dir_lib.has_completed_epoch(run_dir):
        return True
    raise ValueError(
        f"{run_dir} holds an unfinished run with different settings ({', '.join(changed)}); "
        "re-run with the same arguments to resume it, pass --overwrite to start it over, or "
        "choose another --run-name."
    )


def _diverged(config, run_dir, is_chief, policy, learning_rate, what):
    """Mark the run diverged (a rerun may then change its settings) and raise, advising
    only what applies."""
    if is_chief:
        run_dir_lib.write_json(os.path.join(run_dir, run_dir_lib.DIVERGED_MARKER),
                               {"cause": what, "learning_rate": learning_rate})
    advice = [f"a lower --learning-rate (now {learning_rate:g})"]
    if not config.warmup_epochs:
        advice.append("--warmup-epochs 1")
    if policy != "float32":
        advice.append("--precision float32")
    raise callbacks_lib.TrainingDivergedError(
        f"Training diverged: {what}. No backup, checkpoint or model holds the non-finite "
        f"weights. Re-run with {', '.join(advice[:-1]) + ' or ' if len(advice) > 1 else ''}"
        f"{advice[-1]} and the same --run-name: a diverged run starts over with new settings "
        "(the same command resumes from the last good epoch)."
    )


def _epochs_backed_up(run_dir, config):
    """Epochs an interrupted run would resume after (its backups and finished phases)."""
    done = 0
    for index, (_, end_epoch, _) in enumerate(_phases(config)):
        if os.path.exists(os.path.join(run_dir, f"phase{index}.weights.h5")):
            done = max(done, end_epoch)
        try:
            with open(os.path.join(run_dir, "backup", f"phase{index}", "latest.json")) as f:
                done = max(done, int(json.load(f)["epoch"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return done


@contextlib.contextmanager
def _no_ran_out_of_data_warning():
    """Keras warns "Your input ran out of data" at the end of every pass over a dataset of
    unknown size (folder datasets: files that turn out unreadable are dropped). Validation
    is meant to end that way, and the training data repeats, so it cannot run out."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        yield


def train(config: TrainConfig, log=print) -> TrainResult:
    """Train a GoogLeNet as `config` says and write the run directory.

    Re-running the same call after an interruption (even SIGKILL) resumes from the last
    completed epoch. Returns the run directory, the metrics and the trained model.
    """
    config = config.resolved()
    cluster = multiworker.cluster_from_tf_config() if config.strategy == "multi-worker" else None
    is_chief = cluster is None or cluster.is_chief
    run_dir = os.path.join(config.output_dir, config.run_name)
    if is_chief:
        try:
            return _train(config, log, cluster, run_dir, work_dir=run_dir)
        except KeyboardInterrupt:
            raise callbacks_lib.TrainingInterrupted(
                _epochs_backed_up(run_dir, config), run_dir) from None
    # Only the chief writes the run directory; other workers write to a scratch directory,
    # removed however training ends (the launcher's covers SIGKILL too).
    work_dir = multiworker.worker_scratch_dir(config.run_name, cluster.task_id)
    try:
        return _train(config, _quiet, cluster, run_dir, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _train(config, log, cluster, run_dir, work_dir):
    """`train` for one process: the chief writes `run_dir`, other workers `work_dir`."""
    from keras_googlenet_training import data as data_lib

    is_chief = cluster is None or cluster.is_chief
    if is_chief:  # refuse a finished run now; create the directory once inputs are checked
        run_dir_lib.check_run_dir(run_dir, overwrite=config.overwrite)
    started = time.perf_counter()

    # Devices must be configured before anything runs a TF op.
    if cluster is not None:
        strategy = multiworker.make_multi_worker_strategy()
    else:
        strategy = make_strategy(config.replicas)
    replicas = strategy.num_replicas_in_sync
    policy = apply_precision(select_precision(config.precision))
    keras.utils.set_random_seed(config.seed)

    splits = data_lib.load_dataset(
        config.dataset, data_dir=config.data_dir, seed=config.seed,
        val_fraction=config.val_fraction, download=config.download,
    )
    global_batch = config.batch_size * replicas
    steps_per_epoch = splits.num_train // global_batch
    if steps_per_epoch < 1:
        raise ValueError(
            f"`batch_size`: the global batch {global_batch} ({config.batch_size} per replica x "
            f"{replicas} replicas) exceeds the {splits.num_train} training images."
        )
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    with strategy.scope():
        model = _build_model(config, len(splits.class_names))
        if config.init_weights:
            skipped = transfer_weights(_load_source_model(config.init_weights), model)
    # Every input is checked: only now is anything written.
    resuming = run_dir_lib.prepare_run_dir(run_dir, overwrite=config.overwrite) if is_chief \
        else False
    pipeline_args = dict(
        input_size=config.input_size, variant=config.variant, seed=config.seed,
        cache=config.cache,
    )
    train_ds = data_lib.make_pipeline(
        splits.train, batch_size=global_batch, training=True, flip=config.flip,
        distort=config.distort, area_range=(config.min_crop_area, 1.0),
        **({"shuffle_buffer": splits.shuffle_buffer} if splits.shuffle_buffer else {}),
        **pipeline_args,
    ).repeat()
    val_ds = data_lib.make_pipeline(
        splits.val, batch_size=global_batch, training=False, **pipeline_args
    )
    if config.aux:
        heads = ("main", "aux1", "aux2")
        train_ds = train_ds.map(lambda x, y: (x, {h: y for h in heads}))
        val_ds = val_ds.map(lambda x, y: (x, {h: y for h in heads}))
    if cluster is not None:
        # Each worker builds the same seeded pipeline and keeps its share of every batch.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        train_ds, val_ds = train_ds.with_options(options), val_ds.with_options(options)

    record = _config_record(config, {
        "resolved_precision": policy,
        "replicas_in_sync": replicas,
        "global_batch": global_batch,
        "steps_per_epoch_resolved": steps_per_epoch,
        "class_names": splits.class_names,
        "model": {
            "variant": config.variant, "input_size": config.input_size,
            "classes": len(splits.class_names), "widths": config.widths,
            "width_multiplier": config.width_multiplier, "include_aux": config.aux,
            "preprocessing": kg.VARIANTS[config.variant].preprocessing,
        },
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "keras_googlenet": kg.__version__, "python": sys.version.split()[0]},
        "command": sys.argv,
    })
    state = " (resuming)" if resuming else ""
    if is_chief:
        if _check_resume_matches(run_dir, record, overwrite=config.overwrite):
            run_dir_lib.clear_training_state(run_dir)
            state = (" (starting over: the unfinished run there diverged, completed no epoch "
                     "or --overwrite was given)")
        run_dir_lib.write_json(os.path.join(run_dir, "config.json"), record)
        run_dir_lib.write_text(os.path.join(run_dir, "labels.txt"),
                               "\n".join(splits.class_names) + "\n")

    log(
        f"run {run_dir}{state}: {splits.source}, "
        f"{splits.num_train} train / {splits.num_val} val images, {len(splits.class_names)} "
        f"classes; variant {config.variant} at {config.input_size}px; precision {policy}; "
        f"{replicas} replica(s) x {config.batch_size} = global batch {global_batch}; "
        f"{steps_per_epoch} steps/epoch"
    )
    if splits.skipped:
        log(f"skipped {len(splits.skipped)} unreadable file(s): {splits.skipped[:5]}...")

    if config.init_weights:
        log(f"initialised from {config.init_weights}; new heads: {skipped or 'none'}")

    history_path = os.path.join(work_dir, "history.csv")
    best_path = os.path.join(work_dir, "best.weights.h5")
    progress = None
    stop_on_nan = callbacks_lib.StopOnNaN()
    best = callbacks_lib.BestWeights(best_path)
    # Every worker reads the chief's history, so all make the same saving decisions:
    # under MultiWorkerMirroredStrategy a save that one worker skips deadlocks the others.
    chief_history = os.path.join(run_dir, "history.csv")
    if os.path.exists(chief_history):
        previous = run_dir_lib.read_history(chief_history).get("val_main_accuracy", [])
        if previous:
            best.best = max(previous)
    completed_steps = 0
    for index, (first_epoch, end_epoch, frozen) in enumerate(_phases(config)):
        phase_epochs = end_epoch - first_epoch
        phase_done = os.path.join(run_dir, f"phase{index}.weights.h5")  # read by all workers
        last_phase = end_epoch == config.epochs
        if not last_phase and os.path.exists(phase_done):
            model.load_weights(phase_done)  # finished before an interruption
            completed_steps += phase_epochs * steps_per_epoch
            continue
        base_lr = config.learning_rate * (FINE_TUNE_LR_FACTOR if index > 0 else 1.0)
        with strategy.scope():
            set_backbone_trainable(model, not frozen)
            optimizer = _optimizer(
                config, _learning_rate(config, steps_per_epoch, phase_epochs, base_lr),
                total_steps=steps_per_epoch * phase_epochs,
            )
            kg.compile_googlenet(
                model, optimizer=optimizer, label_smoothing=config.label_smoothing,
                loss_weights=(
                    {"aux1": config.aux_loss_weight, "aux2": config.aux_loss_weight}
                    if config.aux else None
                ),
            )
        progress = callbacks_lib.TrainingProgress(
            global_batch, steps_per_epoch, stream=None if is_chief else io.StringIO())
        swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True) if config.ema else None
        backup_dir = os.path.join(run_dir, "backup", f"phase{index}")
        backup = multiworker.EpochBackup(backup_dir, is_chief=is_chief,
                                         restore_on_train_begin=config.loop == "fit")
        # Order matters at epoch end: the CSV row first (a kill before the backup repeats
        # the epoch, and read_history keeps its last row); the backup before the EMA swap
        # (it must hold the raw weights); the best checkpoint after it (averaged weights).
        phase_callbacks = [
            stop_on_nan,
            keras.callbacks.CSVLogger(history_path, append=True),
            backup,
            *([swap] if swap else []),
            best,
            keras.callbacks.TensorBoard(os.path.join(work_dir, "logs")),
            progress,
        ]
        if config.loop == "fit":
            with _no_ran_out_of_data_warning():
                model.fit(
                    train_ds, validation_data=val_ds, epochs=end_epoch,
                    initial_epoch=first_epoch, steps_per_epoch=steps_per_epoch,
                    callbacks=phase_callbacks, verbose=0,
                    shuffle=False,  # the pipeline shuffles; Keras would warn it ignores this
                )
        else:
            with strategy.scope():
                custom_loop = multiworker.CustomLoop(model, strategy, global_batch)
                custom_loop.fit(
                    train_ds, val_ds, epochs=end_epoch, initial_epoch=first_epoch,
                    steps_per_epoch=steps_per_epoch, callbacks=phase_callbacks, backup=backup,
                )
        if stop_on_nan.diverged_at is not None:
            epoch, batch = stop_on_nan.diverged_at
            _diverged(config, run_dir, is_chief, policy, base_lr,
                      f"the loss became NaN/inf at epoch {epoch + 1}, batch {batch + 1}")
        if swap and not swap._ema_weights_in_model:
            # fit ran no epoch (everything was restored): put the average in place here
            model.optimizer.finalize_variable_values(model.trainable_variables)
        # The backup restores the optimizer's step counter too: this is the phase total
        completed_steps += int(model.optimizer.iterations.numpy())
        if not last_phase and is_chief:
            run_dir_lib.save_weights(model, phase_done)

    wall_time = time.perf_counter() - started
    if config.loop == "fit":
        with _no_ran_out_of_data_warning():
            final = model.evaluate(val_ds, verbose=0, return_dict=True)
    else:
        final = custom_loop.evaluate(strategy.experimental_distribute_dataset(val_ds))
    weights_spread = _weights_spread_across_workers(model, strategy) if cluster else None
    if not is_chief:
        return TrainResult(run_dir=None, metrics={"final_val_main_accuracy":
                                                  final["main_accuracy"]}, model=model)
    run_dir_lib.compact_history(history_path)  # drop rows of epochs an interruption redid
    history = run_dir_lib.read_history(history_path)
    val_curve = history.get("val_main_accuracy", [])
    images_per_second = progress.images_per_second if progress else float("nan")

    # Nothing non-finite is ever published as a finished run, whatever got it there.
    bad = callbacks_lib.nonfinite_variables(model)
    if bad or not math.isfinite(float(final["loss"])):
        _diverged(config, run_dir, is_chief, policy, config.learning_rate,
                  f"{len(bad)} weight tensors are NaN/inf" if bad
                  else f"the final validation loss is {float(final['loss'])}")
    run_dir_lib.save_keras(model, os.path.join(run_dir, "model.keras"))
    run_dir_lib.save_keras(kg.float32_inference_model(model),
                           os.path.join(run_dir, "inference.keras"))
    run_dir_lib.plot_curves(
        history, os.path.join(run_dir, "curves.png"),
        title=f"{config.run_name}: GoogLeNet {config.variant}, {splits.source}",
    )
    metrics = {
        "final_val_main_accuracy": float(final["main_accuracy"]),
        "final_val_loss": float(final["loss"]),
        "best_val_main_accuracy": max(val_curve) if val_curve else None,
        "best_epoch": (val_curve.index(max(val_curve)) + 1) if val_curve else None,
        "epochs": config.epochs,
        "epochs_completed": len(history.get("epoch", [])),
        "steps_per_epoch": steps_per_epoch,
        "total_steps": completed_steps,
        "global_batch": global_batch,
        "per_replica_batch": config.batch_size,
        "replicas": replicas,
        "precision": policy,
        "images_per_second": None if math.isnan(images_per_second) else images_per_second,
        "wall_time_seconds": wall_time,
        "num_train": splits.num_train,
        "num_val": splits.num_val,
        "trainable_params": kg.count_params(model),
        "inference_macs": kg.count_macs(kg.inference_model(model)),
        "ema": config.ema,
        "strategy": config.strategy,
        "workers": cluster.num_workers if cluster else 1,
        "loop": config.loop,
        # max |difference| of per-variable weight sums between workers: 0 when in sync
        "worker_weights_max_abs_diff": weights_spread,
    }
    run_dir_lib.write_json(os.path.join(run_dir, run_dir_lib.FINISHED_MARKER), metrics)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    if os.path.exists(os.path.join(run_dir, run_dir_lib.DIVERGED_MARKER)):
        os.remove(os.path.join(run_dir, run_dir_lib.DIVERGED_MARKER))
    for index in range(len(_phases(config))):
        phase_done = os.path.join(run_dir, f"phase{index}.weights.h5")  # read by all workers
        if os.path.exists(phase_done):
            os.remove(phase_done)
    log(
        f"done in {wall_time:.0f} s: val main accuracy {metrics['final_val_main_accuracy']:.4f} "
        f"(best {metrics['best_val_main_accuracy']:.4f} at epoch {metrics['best_epoch']}), "
        f"{metrics['images_per_second'] or float('nan'):.1f} img/s -> {run_dir}"
    )
    return TrainResult(run_dir=run_dir, metrics=metrics, model=model)
