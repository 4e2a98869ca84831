"""The width search behind `googlenet-tune`: load the data, search, report.

`run_search(TuneConfig(...))` runs in this process, or as one role of a distributed
search when KerasTuner's variables are set (`KERASTUNER_TUNER_ID` = `chief` or
`tuner0`, `tuner1`, ...; `KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`). The chief
serves the oracle and writes the results; workers train. `launch_local` starts a chief
and N workers on 127.0.0.1.

The parts: `tune_config` (the settings), `tuner` (KerasTuner tuners under the budget),
`oracle_server` (the chief), `trial_log` (who ran what), `tune_report` (results table,
Pareto plot, best model) and `tune_launch` (the local launcher). The heavy imports
(KerasTuner, the data pipeline) happen inside the functions, and the launcher never
runs a TensorFlow op, so it leaves the devices to its children.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil

from keras_googlenet_training import trial_log
from keras_googlenet_training.oracle_server import TUNE_ENV, distributed_role  # noqa: F401
from keras_googlenet_training.trial_log import read_executions  # noqa: F401
from keras_googlenet_training.tune_config import (  # noqa: F401 - the public names
    BEST_DIR,
    PARETO_PNG,
    RESULTS_CSV,
    RESULTS_MD,
    RESUMABLE_CHANGES,
    SEARCH_CONFIG,
    NoScoreError,
    SearchFailedError,
    SearchResult,
    TuneConfig,
    check_resumable,
    make_hypermodel,
    project_dir,
)
from keras_googlenet_training.tune_launch import launch_local  # noqa: F401
from keras_googlenet_training.tune_report import (  # noqa: F401 - the public names
    TABLE_COLUMNS,
    format_markdown,
    no_score_message,
    plot_pareto,
    save_best_model,
    write_results,
)

logger = logging.getLogger("keras_googlenet.training")


def _datasets(config, splits, global_batch):
    from keras_googlenet_training import data as data_lib

    defaults = data_lib.dataset_defaults(config.dataset)
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

    from keras_googlenet_training import data as data_lib
    from keras_googlenet_training import run_dir as run_dir_lib
    from keras_googlenet_training.precision import apply_precision, select_precision
    from keras_googlenet_training.tuner import make_tuner

    policy = apply_precision(select_precision(config.precision))
    keras.utils.set_random_seed(config.seed)

    record = dataclasses.asdict(config)
    if role != "worker":
        if config.overwrite and os.path.isdir(directory):
            shutil.rmtree(directory)
        check_resumable(os.path.join(directory, SEARCH_CONFIG), record)
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

    tuner = make_tuner(
        config.tuner, hypermodel, max_trials=config.max_trials, max_epochs=config.epochs,
        directory=config.directory, project_name=config.project_name, seed=config.seed,
        # None, not the default strategy: KerasTuner then builds outside any scope.
        distribution_strategy=strategy if replicas > 1 else None,
        overwrite=False,  # handled above, once, by the chief
    )
    before = trial_log.executions_of(directory, tuner.tuner_id)
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
    _search(tuner, hypermodel, role, directory, config, splits, global_batch, steps, callbacks)
    trials_run = len(trial_log.executions_of(directory, tuner.tuner_id)) - len(before)
    if role == "worker":
        log(f"worker {tuner.tuner_id} done: ran {trials_run} trial(s)")
        return SearchResult(role=role, project_dir=directory, trials_run=trials_run)
    return _report(tuner, hypermodel, role, directory, config, splits, trials_run, log)


def _search(tuner, hypermodel, role, directory, config, splits, global_batch, steps,
            callbacks):
    """The chief serves the oracle; the others train trials until none is left."""
    from keras_googlenet_training.tuner import trial_records

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
        write_results(trial_records(tuner.oracle, hypermodel), directory, hypermodel.budget)
        raise SearchFailedError(
            f"the search stopped: {str(error).splitlines()[0]} (tracebacks above). Results so "
            f"far: {os.path.join(directory, RESULTS_MD)}"
        ) from None


def _report(tuner, hypermodel, role, directory, config, splits, trials_run, log):
    """Write the results and the best model; the `SearchResult` of the chief or a
    standalone search."""
    from keras_googlenet.tuning import OBJECTIVE
    from keras_googlenet_training.tuner import trial_records

    records = trial_records(tuner.oracle, hypermodel)
    paths = write_results(records, directory, hypermodel.budget)
    scored = [r for r in records if r["status"] == "completed"]
    if not scored:
        raise NoScoreError(no_score_message(records, directory))
    best = max(scored, key=lambda r: r[OBJECTIVE.name])
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
