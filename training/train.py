"""Train GoogLeNet with its auxiliary heads: the library function behind `googlenet-train`.

`train(config)` runs in four steps: set up the data, build the model (or start it from
`init_weights`) and open the run directory, run each training phase (resuming from its
backups), and finish the run directory. Under the multi-worker strategy every worker runs
them; only the chief writes the run directory.

Nothing is written before every input is checked. The chief then holds the run's lock
(`run_lock`) to the end. `overwrite` of a finished run trains the new run in a staging
sibling and swaps it in only once it has finished: until then the old run is untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

import keras_googlenet as kg
from keras_googlenet import _compat
from keras_googlenet.googlenet import set_batch_norm_momentum
from keras_googlenet.quantization import quantize_aware
from keras_googlenet_training import callbacks as callbacks_lib
from keras_googlenet_training import data as data_lib
from keras_googlenet_training import launcher, multiworker, resume, run_lock
from keras_googlenet_training import pipeline as pipeline_lib
from keras_googlenet_training import run_dir as run_dir_lib
from keras_googlenet_training.distribute import make_strategy
from keras_googlenet_training.optimization import learning_rate_schedule, make_optimizer
from keras_googlenet_training.precision import apply_precision, select_precision
from keras_googlenet_training.splits import DatasetSplits
from keras_googlenet_training.train_config import TrainConfig
from keras_googlenet_training.transfer import (
    load_source_model,
    set_backbone_trainable,
    transfer_weights,
)

logger = logging.getLogger("keras_googlenet.training")

# Fine-tuning after --unfreeze-after restarts the optimizer at this fraction of the LR.
FINE_TUNE_LR_FACTOR = 0.1


@dataclasses.dataclass
class TrainResult:
    run_dir: str
    metrics: dict
    model: keras.Model
    qat_model: keras.Model | None = None  # with `qat_epochs`: the quantization-aware model


@dataclasses.dataclass
class _Data:
    """The batched datasets and the batch arithmetic of one run."""

    splits: DatasetSplits
    global_batch: int
    steps_per_epoch: int
    val: tf.data.Dataset | None = None  # set by `_build_pipelines`
    train_args: dict | None = None  # `pipeline.training_stream`'s, but the epochs


@dataclasses.dataclass
class _Run:
    """What the steps of one training process share."""

    config: TrainConfig
    log: object
    cluster: multiworker.ClusterInfo | None
    run_dir: str  # where the chief trains: the run directory, or its --overwrite staging
    work_dir: str  # the chief's run_dir; a scratch directory on the other workers
    strategy: tf.distribute.Strategy
    policy: str
    started: float
    target: str  # the run directory the finished run ends up in

    @property
    def is_chief(self):
        return self.cluster is None or self.cluster.is_chief

    @property
    def replacing(self):
        return self.run_dir != self.target


def _quiet(*_args, **_kwargs):
    pass


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
    target = run_dir_lib.run_dir_of(config.output_dir, config.run_name)
    # Refuse a run another process holds, or a finished one, now; the directory is
    # created once the inputs are checked.
    if is_chief:
        run_lock.check_free(target, "googlenet-train")
    run_dir_lib.check_run_dir(target, overwrite=config.overwrite)
    # Every worker derives the same directory from what is on disk before anything runs.
    run_dir = run_dir_lib.training_dir(target, overwrite=config.overwrite)
    if is_chief and cluster is None and _finished_replacement(config, run_dir, target):
        return _publish_finished_replacement(run_dir, target, log)
    if is_chief:
        try:
            return _train(config, log, cluster, run_dir, run_dir, target)
        except KeyboardInterrupt as error:
            raise callbacks_lib.TrainingInterrupted(
                resume.epochs_backed_up(run_dir, config), run_dir,
                terminated=isinstance(error, launcher.Terminated),
                replacing=run_dir != target) from None
    # Only the chief writes the run directory; other workers write to a scratch directory,
    # removed however training ends (the launcher's covers SIGKILL too).
    work_dir = multiworker.worker_scratch_dir(config.run_name, cluster.task_id)
    try:
        return _train(config, _quiet, cluster, run_dir, work_dir, target)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _finished_replacement(config, run_dir, target):
    """Whether `run_dir` is a replacement of `target` that finished, with these settings,
    but was stopped before it was swapped in."""
    return (run_dir != target and run_dir_lib.is_finished(run_dir)
            and not run_dir_lib.changed_settings(os.path.join(run_dir, "config.json"),
                                                 dataclasses.asdict(config),
                                                 ignore=resume.RESUME_IGNORES))


def _publish_finished_replacement(run_dir, target, log):
    """Swap in a replacement that had finished before a stop: nothing to train again."""
    with run_lock.exclusive(target, "googlenet-train"):
        run_dir_lib.publish_replacement(run_dir, target)
    log(f"run {target}: its replacement had finished before the stop and is now swapped in "
        "(nothing trained again)")
    with open(os.path.join(target, run_dir_lib.FINISHED_MARKER), encoding="utf-8") as f:
        metrics = json.load(f)
    model = keras.models.load_model(os.path.join(target, "model.keras"))
    return TrainResult(run_dir=target, metrics=metrics, model=model)


def _train(config, log, cluster, run_dir, work_dir, target):
    """`train` for one process: the chief writes `run_dir`, other workers `work_dir`."""
    with contextlib.ExitStack() as lock:
        return _train_locked(config, log, cluster, run_dir, work_dir, target, lock)


def _train_locked(config, log, cluster, run_dir, work_dir, target, lock):
    started = time.perf_counter()
    # Devices must be configured before anything runs a TF op.
    strategy = (multiworker.make_multi_worker_strategy() if cluster is not None
                else make_strategy(config.replicas))
    policy = apply_precision(select_precision(config.precision))
    keras.utils.set_random_seed(config.seed)
    run = _Run(config, log, cluster, run_dir, work_dir, strategy, policy, started, target)

    data = _load_data(run)
    model, new_heads = _build_or_restore(run, data)
    _build_pipelines(run, data)
    if run.is_chief:  # the first write: the lock file, beside the run directory
        lock.enter_context(run_lock.exclusive(target, "googlenet-train"))
    _open_run_dir(run, data, new_heads)

    best = callbacks_lib.BestWeights(os.path.join(work_dir, "best.weights.h5"))
    # Every worker reads the chief's history, so all make the same saving decisions:
    # under MultiWorkerMirroredStrategy a save that one worker skips deadlocks the others.
    chief_history = os.path.join(run_dir, "history.csv")
    if os.path.exists(chief_history):
        previous = _float_epochs(chief_history).get("val_main_accuracy", [])
        if previous:
            best.best = max(previous)
    stop_on_nan = callbacks_lib.StopOnNaN()
    completed_steps, progress, custom_loop = 0, None, None
    for index, phase in enumerate(config.phases()):
        steps, phase_progress, custom_loop = _run_phase(run, data, model, index, phase, best,
                                                        stop_on_nan)
        completed_steps += steps
        progress = phase_progress or progress
    qat_model = qat = None
    if config.qat_epochs:
        qat_model, steps, qat_progress = _run_qat_phase(run, data, model, stop_on_nan)
        completed_steps += steps
        progress = qat_progress or progress

    wall_time = time.perf_counter() - started
    if config.loop == "fit":
        if not model.compiled:  # restored from a finished float phase, or QAT alone
            _compile_for_phase(run, model, config.learning_rate, 1, None, data.steps_per_epoch)
        with _no_ran_out_of_data_warning():
            final = model.evaluate(data.val, verbose=0, return_dict=True)
            if qat_model is not None:
                qat = qat_model.evaluate(data.val, verbose=0, return_dict=True)
    else:
        final = custom_loop.evaluate(strategy.experimental_distribute_dataset(data.val))
    # The test split once, now: no checkpoint, EMA or early stop ever saw it (all workers).
    test = _evaluate_test(run, data, model, custom_loop)
    if qat is not None:
        qat = {"final_val_main_accuracy": float(qat["main_accuracy"]),
               "final_val_loss": float(qat["loss"]), "epochs": config.qat_epochs,
               "learning_rate": config.qat_learning_rate,
               **_evaluate_test(run, data, qat_model, None)}
    # A collective: every worker takes part, before the non-chiefs return.
    weights_spread = _weights_spread_across_workers(model, strategy) if cluster else None
    if not run.is_chief:
        return TrainResult(run_dir=None, metrics={"final_val_main_accuracy":
                                                  final["main_accuracy"]}, model=model)
    metrics = _finish_run_dir(run, data, model, final, wall_time=wall_time,
                              completed_steps=completed_steps, progress=progress,
                              weights_spread=weights_spread, test=test, qat_model=qat_model,
                              qat=qat)
    return TrainResult(run_dir=target, metrics=metrics, model=model, qat_model=qat_model)


def _float_epochs(history_path):
    """history.csv's columns over the float epochs only (what model.keras was chosen on)."""
    history = run_dir_lib.read_history(history_path)
    is_float = [phase != "qat" for phase in run_dir_lib.read_phases(history_path)]
    return {column: [v for v, keep in zip(values, is_float, strict=False) if keep]
            for column, values in history.items()}


def _load_data(run):
    """Load the dataset and size the global batch and the epoch."""
    config, replicas = run.config, run.strategy.num_replicas_in_sync
    splits = data_lib.load_dataset(
        config.dataset, data_dir=config.data_dir, seed=config.seed,
        val_fraction=config.val_fraction, download=config.download,
    )
    global_batch, steps_per_epoch = pipeline_lib.epoch_steps(
        splits.num_train, config.batch_size, replicas, cap=config.steps_per_epoch)
    return _Data(splits, global_batch, steps_per_epoch)


def _build_pipelines(run, data):
    """The validation pipeline, and what the per-phase training streams are built from."""
    config, splits, global_batch = run.config, data.splits, data.global_batch
    common = dict(input_size=config.input_size, variant=config.variant, seed=config.seed,
                  cache=config.cache, batch_size=global_batch)
    data.train_args = dict(
        flip=config.flip, distort=config.distort, area_range=(config.min_crop_area, 1.0),
        **({"shuffle_buffer": splits.shuffle_buffer} if splits.shuffle_buffer else {}),
        **common)
    data.val = _for_the_heads(run, pipeline_lib.make_pipeline(splits.val, training=False,
                                                          **common))
    _training_stream(run, data, 0, 1)  # check the training arguments before any write


def _training_stream(run, data, first_epoch, end_epoch):
    """The batches of epochs `first_epoch`.. `end_epoch - 1`, each a function of (seed,
    epoch): a resumed run sees exactly what an uninterrupted one would have."""
    stream = pipeline_lib.training_stream(
        data.splits.train_for_epoch or data.splits.train, first_epoch=first_epoch,
        end_epoch=end_epoch, steps_per_epoch=data.steps_per_epoch, **data.train_args)
    return _for_the_heads(run, stream)


def _for_the_heads(run, dataset):
    if run.config.aux:
        heads = ("main", "aux1", "aux2")
        dataset = dataset.map(lambda x, y: (x, {h: y for h in heads}))
    if run.cluster is not None:
        # Each worker builds the same seeded pipeline and keeps its share of every batch.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        dataset = dataset.with_options(options)
    return dataset


def _build_or_restore(run, data):
    """The model, started from `init_weights` if given; returns it and the heads that
    start fresh. Weights of an interrupted run are restored per phase, from its backups."""
    config = run.config
    new_heads = None
    with run.strategy.scope():
        model = _build_model(config, len(data.splits.class_names))
        if config.init_weights:
            new_heads = transfer_weights(load_source_model(config.init_weights), model)
    return model, new_heads


def _open_run_dir(run, data, new_heads):
    """Create (or reopen) the run directory, write `config.json` and `labels.txt`, and say
    what is about to run. Only now, every input checked, is anything written."""
    config, splits = run.config, data.splits
    replicas = run.strategy.num_replicas_in_sync
    state = ""
    if run.is_chief:
        if run.replacing and run_dir_lib.is_finished(run.run_dir):
            # Killed between finishing a replacement and swapping it in: swap it in now.
            run_dir_lib.publish_replacement(run.run_dir, run.target)
        if run_dir_lib.prepare_run_dir(run.run_dir):
            state = " (resuming)"
        record = resume.config_record(config, data, run.policy, replicas)
        if resume.starts_over(run.run_dir, record, overwrite=config.overwrite):
            run_dir_lib.clear_training_state(run.run_dir)
            state = (" (starting over: the unfinished run there diverged, completed no epoch "
                     "or --overwrite was given)")
        run_dir_lib.write_json(os.path.join(run.run_dir, "config.json"), record)
        run_dir_lib.write_text(os.path.join(run.run_dir, "labels.txt"),
                               "\n".join(splits.class_names) + "\n")
    if run.replacing:
        state += (f"; replacing the finished run in {run.target} once this one has finished "
                  "(until then it stays as it was)")
    run.log(
        f"run {run.run_dir}{state}: {splits.source}, "
        f"{splits.num_train} train / {splits.num_val} val images, {len(splits.class_names)} "
        f"classes; variant {config.variant} at {config.input_size}px; precision {run.policy}; "
        f"{replicas} replica(s) x {config.batch_size} = global batch {data.global_batch}; "
        f"{data.steps_per_epoch} steps/epoch"
        + (f"; {config.epochs} float then {config.qat_epochs} quantization-aware epochs (LR "
           f"{config.qat_learning_rate:g})" if config.qat_epochs else "")
    )
    if splits.skipped:
        run.log(f"skipped {len(splits.skipped)} unreadable file(s): {splits.skipped[:5]}...")
    if config.init_weights:
        run.log(f"initialised from {config.init_weights}; new heads: {new_heads or 'none'}")


def _compile_for_phase(run, model, base_lr, phase_epochs, frozen, steps_per_epoch):
    """Compile `model` for one phase; `frozen` None leaves every layer's `trainable` as is."""
    config = run.config
    with run.strategy.scope():
        if frozen is not None:
            set_backbone_trainable(model, not frozen)
        optimizer = make_optimizer(
            config, learning_rate_schedule(config, steps_per_epoch, phase_epochs, base_lr),
            total_steps=steps_per_epoch * phase_epochs,
        )
        kg.compile_googlenet(
            model, optimizer=optimizer, label_smoothing=config.label_smoothing,
            loss_weights=(
                {"aux1": config.aux_loss_weight, "aux2": config.aux_loss_weight}
                if config.aux else None
            ),
        )


def _run_qat_phase(run, data, model, stop_on_nan):
    """The quantization-aware phase after the float ones: `quantize_aware` of the trained
    float model, fine-tuned at `qat_learning_rate` on the same stream, resuming from its
    own backup (which holds the learned ranges: they are the QAT model's weights).
    Returns (the QAT model, its optimizer steps, progress)."""
    config = run.config
    first_epoch, end_epoch = config.qat_phase()
    with run.strategy.scope():  # its variables must be the strategy's, like the float model's
        qat_model = quantize_aware(model)
    # `frozen` None: what the last float phase froze stays frozen, and the folded
    # preprocessing conv (trainable=False) is not unfrozen.
    steps, progress, _ = _run_phase(
        run, data, qat_model, len(config.phases()), (first_epoch, end_epoch, None), None,
        stop_on_nan, base_lr=config.qat_learning_rate, label="qat")
    return qat_model, steps, progress


def _run_phase(run, data, model, index, phase, best, stop_on_nan, base_lr=None,
               label="float"):
    """Train one phase (all epochs, the frozen or the fine-tuning part, or QAT: `label`),
    resuming from its backup. Returns (optimizer steps of the phase, progress, custom loop)."""
    config, steps_per_epoch = run.config, data.steps_per_epoch
    first_epoch, end_epoch, frozen = phase
    phase_epochs = end_epoch - first_epoch
    phase_done = os.path.join(run.run_dir, f"phase{index}.weights.h5")  # read by all workers
    last_phase = end_epoch == config.all_phases()[-1][1]
    if not last_phase and os.path.exists(phase_done):
        model.load_weights(phase_done)  # finished before an interruption
        return phase_epochs * steps_per_epoch, None, None
    if base_lr is None:
        base_lr = config.learning_rate * (FINE_TUNE_LR_FACTOR if index > 0 else 1.0)
    _compile_for_phase(run, model, base_lr, phase_epochs, frozen, steps_per_epoch)
    progress = callbacks_lib.TrainingProgress(
        data.global_batch, steps_per_epoch, stream=None if run.is_chief else io.StringIO())
    swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True) if config.ema else None
    backup = multiworker.EpochBackup(os.path.join(run.run_dir, "backup", f"phase{index}"),
                                     is_chief=run.is_chief,
                                     restore_on_train_begin=config.loop == "fit")
    # Order matters at epoch end: the CSV row first (a kill before the backup repeats
    # the epoch, and read_history keeps its last row); the backup before the EMA swap
    # (it must hold the raw weights); the best checkpoint after it (averaged weights).
    phase_callbacks = [
        stop_on_nan,
        callbacks_lib.PhaseCSVLogger(os.path.join(run.work_dir, "history.csv"), label,
                                     append=True),
        backup,
        *([swap] if swap else []),
        *([best] if best is not None else []),  # model.keras is the float model, not QAT
        keras.callbacks.TensorBoard(os.path.join(run.work_dir, "logs")),
        progress,
    ]
    custom_loop = None
    # The epoch the backup restores (read again by `backup` itself): the stream starts there.
    resumed_at = max(first_epoch, backup.completed_epochs())
    train_stream = _training_stream(run, data, resumed_at, end_epoch)
    if config.loop == "fit":
        with _no_ran_out_of_data_warning():
            model.fit(
                train_stream, validation_data=data.val, epochs=end_epoch,
                initial_epoch=first_epoch, steps_per_epoch=steps_per_epoch,
                callbacks=phase_callbacks, verbose=0,
                shuffle=False,  # the pipeline shuffles; Keras would warn it ignores this
            )
    else:
        with run.strategy.scope():
            custom_loop = multiworker.CustomLoop(model, run.strategy, data.global_batch)
            custom_loop.fit(
                train_stream, data.val, epochs=end_epoch, initial_epoch=first_epoch,
                steps_per_epoch=steps_per_epoch, callbacks=phase_callbacks, backup=backup,
            )
    if stop_on_nan.diverged_at is not None:
        epoch, batch = stop_on_nan.diverged_at
        resume.mark_diverged(config, run.run_dir, run.is_chief, run.policy, base_lr,
                  f"the loss became NaN/inf at epoch {epoch + 1}, batch {batch + 1}")
    # Fit ran no epoch, everything was restored: the average must be put in place here.
    if swap and not _compat.ema_weights_in_model(swap):
        model.optimizer.finalize_variable_values(model.trainable_variables)
    if not last_phase and run.is_chief:
        run_dir_lib.save_weights(model, phase_done)
    # The backup restores the optimizer's step counter too: this is the phase total.
    return int(model.optimizer.iterations.numpy()), progress, custom_loop


def _finish_run_dir(run, data, model, final, qat_model=None, **summary):
    """Publish the finished run: models, curves, metrics (the marker, written last), and
    remove what only an unfinished run needs. Returns the metrics."""
    config, run_dir = run.config, run.run_dir
    history_path = os.path.join(run.work_dir, "history.csv")
    run_dir_lib.compact_history(history_path)  # drop rows of epochs an interruption redid
    history = _float_epochs(history_path)
    phases = run_dir_lib.read_phases(history_path)
    # Nothing non-finite is ever published as a finished run, whatever got it there.
    bad = callbacks_lib.nonfinite_variables(model) + (
        callbacks_lib.nonfinite_variables(qat_model) if qat_model is not None else [])
    if bad or not math.isfinite(float(final["loss"])):
        resume.mark_diverged(config, run_dir, run.is_chief, run.policy, config.learning_rate,
                  f"{len(bad)} weight tensors are NaN/inf" if bad
                  else f"the final validation loss is {float(final['loss'])}")
    run_dir_lib.save_keras(model, os.path.join(run_dir, "model.keras"))
    run_dir_lib.save_keras(kg.float32_inference_model(model),
                           os.path.join(run_dir, "inference.keras"))
    if qat_model is not None:
        run_dir_lib.save_keras(qat_model, os.path.join(run_dir, "qat.keras"))
    run_dir_lib.plot_curves(  # every epoch, QAT's too
        run_dir_lib.read_history(history_path), os.path.join(run_dir, "curves.png"),
        title=f"{config.run_name}: GoogLeNet {config.variant}, {data.splits.source}",
    )
    metrics = _metrics(run, data, model, final, history, phases, **summary)
    run_dir_lib.write_json(os.path.join(run_dir, run_dir_lib.FINISHED_MARKER), metrics)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    leftovers = [run_dir_lib.DIVERGED_MARKER] + [
        f"phase{index}.weights.h5" for index in range(len(config.all_phases()))]
    for name in leftovers:
        if os.path.exists(os.path.join(run_dir, name)):
            os.remove(os.path.join(run_dir, name))
    if run.replacing:  # only now, the new run finished, does the old one go
        run_dir_lib.publish_replacement(run_dir, run.target)
    best = (f" (best {metrics['best_val_main_accuracy']:.4f} at epoch {metrics['best_epoch']})"
            if metrics["best_epoch"] else "")  # QAT alone trains no float epoch
    qat = (f"; QAT {metrics['qat']['final_val_main_accuracy']:.4f} (qat.keras)"
           if metrics["qat"] else "")
    run.log(
        f"done in {metrics['wall_time_seconds']:.0f} s: val main accuracy "
        f"{metrics['final_val_main_accuracy']:.4f}{best}{qat}, "
        f"{metrics['images_per_second'] or float('nan'):.1f} img/s -> {run.target}"
    )
    return metrics


def _evaluate_test(run, data, model, custom_loop):
    """`{"test_main_accuracy", "test_loss"}` on the dataset's test split; {} without one."""
    splits, config = data.splits, run.config
    if splits.test is None or not splits.num_test:
        return {}
    test = _for_the_heads(run, pipeline_lib.make_pipeline(
        splits.test, training=False, input_size=config.input_size, variant=config.variant,
        seed=config.seed, batch_size=data.global_batch))
    if config.loop == "fit":
        with _no_ran_out_of_data_warning():
            result = model.evaluate(test, verbose=0, return_dict=True)
    else:
        result = custom_loop.evaluate(run.strategy.experimental_distribute_dataset(test))
    return {"test_main_accuracy": float(result["main_accuracy"]),
            "test_loss": float(result["loss"])}


def _metrics(run, data, model, final, history, phases, *, wall_time, completed_steps,
             progress, weights_spread, test=None, qat=None):
    """`metrics.json` of a finished run: validation figures (what was selected on) and,
    apart, the test split's, evaluated once at the end."""
    config = run.config
    val_curve = history.get("val_main_accuracy", [])
    images_per_second = progress.images_per_second if progress else float("nan")
    return {
        "final_val_main_accuracy": float(final["main_accuracy"]),
        "final_val_loss": float(final["loss"]),
        "best_val_main_accuracy": max(val_curve) if val_curve else None,
        "best_epoch": (val_curve.index(max(val_curve)) + 1) if val_curve else None,
        "epochs": config.epochs,
        "epochs_completed": len(phases),
        "epoch_phases": phases,  # "float" or "qat", per epoch (history.csv's `phase`)
        "qat": qat,  # the QAT model's figures (qat.keras); None without --qat-epochs
        "steps_per_epoch": data.steps_per_epoch,
        "total_steps": completed_steps,
        "global_batch": data.global_batch,
        "per_replica_batch": config.batch_size,
        "replicas": run.strategy.num_replicas_in_sync,
        "precision": run.policy,
        "images_per_second": None if math.isnan(images_per_second) else images_per_second,
        "wall_time_seconds": wall_time,
        "num_train": data.splits.num_train,
        "num_val": data.splits.num_val,
        "validation_split": data.splits.val_split,
        "test_split": data.splits.test_split,
        "num_test": data.splits.num_test,
        **(test or {}),
        "trainable_params": kg.count_params(model),
        "inference_macs": kg.count_macs(kg.inference_model(model)),
        "ema": config.ema,
        "strategy": config.strategy,
        "workers": run.cluster.num_workers if run.cluster else 1,
        "loop": config.loop,
        # max |difference| of per-variable weight sums between workers: 0 when in sync
        "worker_weights_max_abs_diff": weights_spread,
    }
