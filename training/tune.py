"""The width search behind `googlenet-tune`: load the data, search, report.

`run_search(TuneConfig(...))` runs in this process, or as one role of a distributed
search when KerasTuner's variables are set (`KERASTUNER_TUNER_ID` = `chief` or
`tuner0`, `tuner1`, ...; `KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`). The chief
serves the oracle and writes the results; workers train. `tune_launch.launch_local`
starts a chief and N workers on 127.0.0.1.

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

from keras_googlenet_training import run_lock
from keras_googlenet_training.oracle_server import distributed_role
from keras_googlenet_training.tune_config import (
    RESULTS_MD,
    RESUMABLE_CHANGES,
    SEARCH_CONFIG,
    NoScoreError,
    SearchFailedError,
    SearchResult,
    TuneConfig,
    check_resumable,
    is_owned,
    make_hypermodel,
    project_dir,
    work_dir,
)
from keras_googlenet_training.tune_report import no_score_message, save_best_model, write_results

logger = logging.getLogger("keras_googlenet.training")


def _datasets(config, splits, global_batch):
    from keras_googlenet_training.data import dataset_defaults
    from keras_googlenet_training.pipeline import make_pipeline

    defaults = dataset_defaults(config.dataset)
    # The pipeline's preprocessing is the same ("tf" mode) for every variant.
    common = dict(input_size=config.input_size, variant=config.variants[0], seed=config.seed,
                  cache=defaults["cache"])
    train_ds = make_pipeline(
        splits.train, batch_size=global_batch, training=True, flip=defaults["flip"],
        area_range=(defaults["min_crop_area"], 1.0), **common,
        **({"shuffle_buffer": splits.shuffle_buffer} if splits.shuffle_buffer else {}),
    ).repeat()
    # The objective is scored on the validation split, never on `test` (held out).
    val_ds = make_pipeline(splits.val, batch_size=global_batch, training=False,
                                    **common)
    if config.validation_steps:
        val_ds = val_ds.take(config.validation_steps)
    return train_ds, val_ds


def check_settings(config, role="standalone"):
    """The checks that need no data and write nothing: the settings, the search space and
    budget, the project's name and place, and (unless `overwrite`) that its saved search
    has the same settings. Returns the resolved config."""
    config = config.resolved()
    make_hypermodel(config, classes=1)  # the space and budget; the data gives the classes
    if role != "worker":  # a search another process runs is refused before any data loads
        run_lock.check_free(project_dir(config), "googlenet-tune")
    if role != "worker" and not config.overwrite:
        check_resumable(os.path.join(project_dir(config), SEARCH_CONFIG),
                        dataclasses.asdict(config))
    return config


def run_search(config: TuneConfig, log=print, callbacks=None) -> SearchResult:
    """Run (or continue) a width search as `config` says; write the results when done.

    Re-running the same call continues an interrupted search: finished trials are
    reloaded, not retrained, and an interrupted trial runs again. In a distributed
    search (KerasTuner's environment variables set) the chief serves the oracle and
    writes the results, workers train; `callbacks` are extra Keras callbacks for every
    trial.

    Every setting, the dataset and the budget are checked before anything is written.
    With `overwrite` the new search is built beside the project (`work_dir`) and swapped
    in only once it has finished and written its results: until then the old search
    stays as it was. The chief (or a standalone search) holds the project's lock
    (`run_lock`) while it writes, so a second search on it is refused at once.

    Raises:
        ValueError: bad settings, a project holding a search with other settings, or
            one another process is searching in (`run_lock.LockedError`).
        NoScoreError: the search ended and no trial produced a score (every candidate was
            over budget, or every trial crashed).
        SearchFailedError: KerasTuner stopped the search after consecutive crashes.
    """
    role = distributed_role()
    config = check_settings(config, role)
    final_dir, directory = project_dir(config), work_dir(config)

    # Devices first: logical CPU replicas can only be made before TF initialises.
    from keras_googlenet_training.distribute import make_strategy

    strategy = make_strategy(config.replicas) if role != "chief" else None
    import keras

    from keras_googlenet_training import data as data_lib
    from keras_googlenet_training.pipeline import epoch_steps
    from keras_googlenet_training.precision import apply_precision, select_precision

    policy = apply_precision(select_precision(config.precision))
    keras.utils.set_random_seed(config.seed)

    record = dataclasses.asdict(config)
    splits = data_lib.load_dataset(config.dataset, data_dir=config.data_dir, seed=config.seed,
                                   val_fraction=config.val_fraction)
    hypermodel = make_hypermodel(config, splits.num_classes)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    global_batch, steps = epoch_steps(splits.num_train, config.batch_size, replicas,
                                      cap=config.steps_per_epoch)
    plan = dict(role=role, directory=directory, config=config, splits=splits,
                hypermodel=hypermodel, global_batch=global_batch, steps=steps,
                replicas=replicas, policy=policy, callbacks=callbacks, log=log,
                strategy=strategy)
    if role == "worker":  # the chief holds the lock and writes the record
        return _run(**plan)
    # Everything is checked: from here on this process writes, and alone.
    with run_lock.exclusive(final_dir, "googlenet-tune"):
        _start_record(directory, record, config.overwrite, log)
        result = _run(**plan)
        if config.overwrite:
            _swap_in(result, directory, final_dir, log)
    return result


def _start_record(directory, record, overwrite, log):
    """Write `search.json`, under the lock. A replacement left by an interrupted
    `--overwrite` with the same settings is continued; with other settings it is
    discarded (it never was the user's search)."""
    from keras_googlenet.publish import remove_path
    from keras_googlenet_training import run_dir as run_dir_lib

    path = os.path.join(directory, SEARCH_CONFIG)
    if not overwrite:
        check_resumable(path, record)  # again: another search may have started meanwhile
    elif run_dir_lib.changed_settings(path, record, ignore=RESUMABLE_CHANGES):
        log(f"discarding {directory}: an unfinished replacement with other settings")
        for name in os.listdir(directory):
            # Not the logs a distributed search's launcher has just opened, nor a user's
            # file an interrupted swap had moved in.
            if is_owned(name) and name != "logs":
                remove_path(os.path.join(directory, name))
    run_dir_lib.write_json(path, record)


def _swap_in(result, staging, final_dir, log):
    """Replace the old search by the finished one in `staging`, keeping the user's own
    files; the result's paths then name their final place."""
    from keras_googlenet.publish import replace_owned

    replace_owned(staging, final_dir, owned=is_owned)
    staging = os.path.abspath(staging)

    def moved(path):
        path = os.path.abspath(path)
        if path == staging or path.startswith(staging + os.sep):
            return os.path.join(final_dir, os.path.relpath(path, staging))
        return path

    result.paths = {k: v if k == "markdown_text" else moved(v) for k, v in result.paths.items()}
    log(f"replaced {final_dir} with the new search")


def _run(role, directory, config, splits, hypermodel, global_batch, steps, replicas, policy,
         callbacks, log, strategy):
    """Build the tuner in `directory`, search, and report (the chief or standalone)."""
    from keras_googlenet_training.tuner import make_tuner

    tuner = make_tuner(
        config.tuner, hypermodel, max_trials=config.max_trials, max_epochs=config.epochs,
        directory=config.directory, project_name=os.path.basename(directory),
        seed=config.seed,
        # None, not the default strategy: KerasTuner then builds outside any scope.
        distribution_strategy=strategy if replicas > 1 else None,
        overwrite=False,  # --overwrite builds its replacement in a staging directory
    )
    done = [] if role == "worker" else [
        t for t in tuner.oracle.trials.values() if t.status in ("COMPLETED", "FAILED")]
    log(
        f"{role} {tuner.tuner_id if role != 'standalone' else ''} search {directory}"
        f"{f' (resuming: {len(done)} finished trial(s) kept)' if done else ''}: "
        f"{config.tuner}, max {config.max_trials} trials x {config.epochs} epoch(s) x "
        f"{steps} steps; {splits.source} ({splits.num_train} train / {splits.num_val} val "
        f"from {splits.val_split}, "
        f"{splits.num_classes} classes) at {config.input_size}px; precision {policy}; "
        f"{replicas} replica(s) x {config.batch_size}; budget "
        f"{_budget_text(hypermodel.budget)}"
    )
    _search(tuner, hypermodel, role, directory, config, splits, global_batch, steps, callbacks)
    if role == "worker":
        log(f"worker {tuner.tuner_id} done: ran {tuner.trials_run} trial(s)")
        return SearchResult(role=role, project_dir=directory, trials_run=tuner.trials_run)
    return _report(tuner, hypermodel, role, directory, config, splits, tuner.trials_run, log)


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
    return SearchResult(role=role, project_dir=project_dir(config), records=records, best=best,
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
