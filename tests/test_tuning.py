"""KerasTuner width search: the space, the budget, scores, resume, distributed tuning.

Candidates are tiny (digits at 32 px without aux heads, quarter width, one epoch of two
steps) so trials are short; the distributed search runs `googlenet-tune --workers 2` in
a subprocess with a time limit and kills its whole process group whatever happens.
"""

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import keras_tuner as kt
import numpy as np
import pytest

import keras_googlenet as kg
from keras_googlenet import spec as spec_lib
from keras_googlenet import tuning
from keras_googlenet.complexity import model_profile
from keras_googlenet_training import run_lock
from keras_googlenet_training.cli.tune import EXIT_BAD_ARGUMENTS, EXIT_SEARCH_FAILED, main
from keras_googlenet_training.oracle_server import distributed_role
from keras_googlenet_training.trial_log import EXECUTIONS_DIR, read_executions
from keras_googlenet_training.tune import run_search
from keras_googlenet_training.tune_config import NoScoreError, TuneConfig
from keras_googlenet_training.tuner import make_tuner

TINY = dict(dataset="digits", input_size=32, aux=False, variants=("v1",), width_multiplier=0.25,
            stage_multipliers=(0.25, 0.5), reduce_ratios=(0.5, 1.0), epochs=1,
            steps_per_epoch=2, validation_steps=3, batch_size=32, precision="float32")
TINY_ARGS = ["--input-size", "32", "--no-aux", "--variants", "v1", "--width-multiplier", "0.25",
             "--stage-multipliers", "0.25,0.5", "--reduce-ratios", "0.5,1", "--epochs", "1",
             "--steps-per-epoch", "2", "--validation-steps", "3", "--precision", "float32"]
BUDGET_MACS = 1.4e6  # splits TINY's space: about half its candidates are over


def _space_product(hypermodel):
    """Every configuration the hypermodel can produce (its space has only choices)."""
    hp = kt.HyperParameters()
    hypermodel.build_model(hp)
    names, options = [], []
    for param in hp.space:
        names.append(param.name)
        options.append(param.values if hasattr(param, "values") else [param.value])
    for combo in itertools.product(*options):
        candidate = hp.copy()
        candidate.values.update(dict(zip(names, combo, strict=True)))
        yield candidate


def _checkpoint(project, trial_id):
    return project / f"trial_{trial_id}" / "checkpoint.weights.h5"


# ------------------------------------------------------------------ the space


@pytest.mark.slow
def test_hypermodel_builds_every_configuration_with_profile_macs():
    hypermodel = tuning.GoogLeNetHyperModel(
        (65, 65, 3), 10, include_aux=True, width_multiplier=0.25,
        stage_multipliers=(0.25, 0.5), reduce_ratios=(0.5, 1.0),
    )
    seen = set()
    for hp in _space_product(hypermodel):
        model = hypermodel.build_model(hp)
        cost = hypermodel.cost(hp, model)
        deployed = kg.inference_model(model)
        profile_macs = sum(row["macs"] for row in model_profile(deployed))
        assert cost.macs == kg.count_macs(deployed) == profile_macs
        assert cost.params == kg.count_params(deployed)
        assert cost.macs < kg.count_macs(model)  # the aux heads are not deployed
        widths = hypermodel.widths(hp)
        for block, cols in widths.items():
            for column, width in zip(spec_lib.WIDTH_COLUMNS, cols, strict=True):
                assert model.get_layer(f"inception_{block}_{column}_conv").filters == width
        seen.add(json.dumps(widths, sort_keys=True))
    assert len(seen) >= 16  # the choices really change the network (some round alike)
    # a compiled candidate trains on plain labels, fed to every head
    model = hypermodel.build(hp)
    history = hypermodel.fit(hp, model, np.zeros((4, 65, 65, 3), "float32"), np.arange(4),
                             epochs=1, verbose=0)
    assert np.isfinite(history.history["main_accuracy"][0])


def test_all_ones_is_the_paper_network():
    hypermodel = tuning.GoogLeNetHyperModel((224, 224, 3), 1000, include_aux=False,
                                            stage_multipliers=(0.5, 1.0), reduce_ratios=(1.0,))
    hp = kt.HyperParameters()
    hypermodel.values(hp)
    hp.values.update(stage3=1.0, stage4=1.0, stage5=1.0)
    assert hypermodel.widths(hp) == spec_lib.INCEPTION_WIDTHS
    paper = kg.GoogLeNet(variant="v1_bn")
    assert hypermodel.cost(hp).macs == kg.count_macs(paper)  # 1.58 G multiply-adds


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="stage_multipliers"):
        tuning.GoogLeNetHyperModel(stage_multipliers=(0.0, 1.0))
    with pytest.raises(ValueError, match="max_macs"):
        tuning.GoogLeNetHyperModel(max_macs=-1)
    with pytest.raises(ValueError, match="latency_precision"):
        tuning.GoogLeNetHyperModel(latency_precision="fp8")
    with pytest.raises(ValueError, match=">= 65"):
        tuning.GoogLeNetHyperModel((32, 32, 3), include_aux=True)
    with pytest.raises(ValueError, match="tuner"):
        make_tuner("grid", tuning.GoogLeNetHyperModel())
    assert main(["--max-trials", "0"]) == EXIT_BAD_ARGUMENTS


def test_the_chief_is_the_tuner_id_chief_exactly():
    """The role was `"chief" in KERASTUNER_TUNER_ID`: a worker named `mischief0` became a
    second chief."""
    env = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8000"}
    assert distributed_role({}) == "standalone"
    assert distributed_role({**env, "KERASTUNER_TUNER_ID": "chief"}) == "chief"
    assert distributed_role({**env, "KERASTUNER_TUNER_ID": "tuner0"}) == "worker"
    with pytest.raises(ValueError, match="mischief0"):
        distributed_role({**env, "KERASTUNER_TUNER_ID": "mischief0"})
    with pytest.raises(ValueError, match="KERASTUNER_TUNER_ID"):
        distributed_role(env)


# ------------------------------------------------------------------ the budget


@pytest.mark.slow
def test_latency_budget_measures_the_tflite_model():
    hypermodel = tuning.GoogLeNetHyperModel(
        (32, 32, 3), 10, include_aux=False, width_multiplier=0.25, stage_multipliers=(0.25,),
        reduce_ratios=(0.5,), max_latency_ms=1e-4,
    )
    cost = hypermodel.cost(kt.HyperParameters())
    assert cost.latency_ms is not None and 0 < cost.latency_ms < 1000
    assert cost.over_budget and "latency" in cost.violations[0]
    with pytest.raises(tuning.BudgetExceededError):
        hypermodel.check_budget(kt.HyperParameters())

    # over budget on MACs already: the (slow) conversion is skipped
    cheap_check = tuning.GoogLeNetHyperModel(
        (32, 32, 3), 10, include_aux=False, width_multiplier=0.25, stage_multipliers=(0.25,),
        reduce_ratios=(0.5,), max_macs=1000, max_latency_ms=1e-4,
    )
    cost = cheap_check.cost(kt.HyperParameters())
    assert cost.latency_ms is None and "max_macs" in cost.violations[0]


@pytest.mark.slow
def test_over_budget_candidates_are_rejected_without_training(tmp_path):
    config = TuneConfig(**{**TINY, "stage_multipliers": (0.25,)}, max_macs=1000, max_trials=2,
                        directory=str(tmp_path))
    with pytest.raises(NoScoreError, match="every candidate was over budget"):
        run_search(config)
    project = tmp_path / "googlenet"
    executions = read_executions(str(project / EXECUTIONS_DIR))
    # all 4 candidates of this space were tried: rejections do not use up max_trials
    assert len(executions) == 4
    assert {e["status"] for e in executions} == {"rejected"}
    assert all(e["macs"] > 1000 for e in executions)
    for e in executions:
        assert not _checkpoint(project, e["trial_id"]).exists()  # never trained
        trial = json.loads((project / f"trial_{e['trial_id']}" / "trial.json").read_text())
        assert trial["status"] == "FAILED" and trial["score"] is None
    table = (project / "results.md").read_text()
    assert table.count("| rejected |") == 4 and "max_macs" in table


# ------------------------------------------------------------------ search and resume


class InterruptSecondTrial(keras.callbacks.Callback):
    """Ctrl-C in the middle of the second trial that trains (KerasTuner copies callbacks,
    the class attribute is shared)."""

    trials = 0

    def on_train_begin(self, logs=None):
        type(self).trials += 1

    def on_train_batch_end(self, batch, logs=None):
        if type(self).trials == 2:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def resumed_search(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tuning")
    config = TuneConfig(**TINY, max_trials=2, max_macs=BUDGET_MACS, directory=str(directory))
    with pytest.raises(KeyboardInterrupt):
        run_search(config, callbacks=[InterruptSecondTrial()])
    project = directory / "googlenet"
    interrupted = read_executions(str(project / EXECUTIONS_DIR))
    finished = [e for e in interrupted if e["status"] == "completed"]
    assert len(finished) == 1  # the second trained trial was interrupted
    checkpoint = _checkpoint(project, finished[0]["trial_id"])
    stamp = checkpoint.stat().st_mtime_ns
    keras.config.set_dtype_policy("float32")
    result = run_search(config)  # the same call continues the search
    return {"result": result, "project": project, "before": interrupted,
            "after": read_executions(str(project / EXECUTIONS_DIR)),
            "checkpoint": checkpoint, "stamp": stamp, "config": config}


@pytest.mark.slow
def test_search_yields_real_scores(resumed_search):
    result = resumed_search["result"]
    completed = [r for r in result.records if r["status"] == "completed"]
    assert len(completed) == 2
    for record in completed:
        score = record["val_main_accuracy"]
        assert score is not None and isinstance(score, float) and 0.0 <= score <= 1.0
        assert record["macs"] <= BUDGET_MACS and record["seconds"] > 0
    for record in result.records:
        if record["status"] == "rejected":
            assert record["macs"] > BUDGET_MACS
            assert not _checkpoint(resumed_search["project"], record["trial"]).exists()
        else:
            assert record["status"] == "completed"
    assert result.best["val_main_accuracy"] == max(r["val_main_accuracy"] for r in completed)


@pytest.mark.slow
def test_resume_does_not_retrain_finished_trials(resumed_search):
    before, after = resumed_search["before"], resumed_search["after"]
    new = after[len(before):]
    first = next(e for e in before if e["status"] == "completed")
    assert first["trial_id"] not in {e["trial_id"] for e in new}
    assert [e["status"] for e in new].count("completed") == 1  # only the interrupted one
    assert resumed_search["result"].trials_run == len(new)
    assert resumed_search["checkpoint"].stat().st_mtime_ns == resumed_search["stamp"]
    # a changed setting is refused rather than mixed into the finished trials
    changed = TuneConfig(**{**TINY, "epochs": 2}, max_trials=2, max_macs=BUDGET_MACS,
                         directory=resumed_search["config"].directory)
    with pytest.raises(ValueError, match="epochs"):
        run_search(changed)


@pytest.mark.slow
def test_results_table_pareto_plot_and_best_model(resumed_search):
    result, project = resumed_search["result"], resumed_search["project"]
    for name in ("results.csv", "results.md", "pareto.png"):
        assert (project / name).stat().st_size > 0
    rows = (project / "results.csv").read_text().splitlines()
    assert rows[0].startswith("trial,status,val_main_accuracy,macs,params")
    assert len(rows) == 1 + len(result.records)
    best_dir = project / "best"
    model = keras.saving.load_model(best_dir / "inference.keras", compile=False)
    assert not isinstance(model.output, dict) and model.input_shape == (None, 32, 32, 3)
    assert {w.dtype for w in model.weights} == {"float32"}
    config = json.loads((best_dir / "config.json").read_text())
    rebuilt = kg.GoogLeNet(
        input_shape=(32, 32, 3), classes=10, variant=config["model"]["variant"],
        widths={k: tuple(v) for k, v in config["model"]["widths"].items()},
        width_multiplier=config["model"]["width_multiplier"],
    )
    assert kg.count_params(rebuilt) == kg.count_params(model) == result.best["params"]
    assert config["trial"] == result.best["trial"]
    assert result.best["trial"] in tuning.pareto_front(result.records)


# ------------------------------------------------------------------ --overwrite and the lock


def _contents(root):
    """Every path under `root` (links not followed) with its bytes; None for a directory."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            state[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                state[os.path.relpath(path, root)] = f.read()
    return state


def _json_tail(out):
    return json.loads(out[out.rindex("\n{\n") + 1:])


class InterruptFirstTrial(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        raise KeyboardInterrupt


@pytest.mark.slow
def test_overwrite_replaces_a_finished_search_only_once_the_new_one_finished(
        resumed_search, tmp_path, capsys):
    """`--overwrite` used to delete the project first: a replacement that failed or was
    interrupted left neither search. Now the old one stays, byte for byte, until the new
    one has finished; then the new one is swapped in, with the user's own files kept."""
    project = tmp_path / "googlenet"
    shutil.copytree(resumed_search["project"], project)
    (project / "notes.txt").write_text("mine")
    old = _contents(project)
    common = [*TINY_ARGS, "--max-trials", "1", "--directory", str(tmp_path), "--overwrite"]

    # a replacement that produces no score (every candidate over budget)
    assert main([*common, "--stage-multipliers", "0.25", "--max-macs", "1000"]) \
        == EXIT_SEARCH_FAILED
    assert _contents(project) == old
    # one interrupted in its first trial (it has other settings: the unfinished
    # replacement above is discarded, not resumed)
    keras.config.set_dtype_policy("float32")
    with pytest.raises(KeyboardInterrupt):
        run_search(TuneConfig(**TINY, seed=1, max_trials=1, overwrite=True,
                              directory=str(tmp_path)), callbacks=[InterruptFirstTrial()])
    assert _contents(project) == old
    keras.saving.load_model(project / "best" / "inference.keras", compile=False)
    assert not os.path.exists(run_lock.lock_path(project))
    capsys.readouterr()

    # the same command again continues the replacement, finishes it and swaps it in
    keras.config.set_dtype_policy("float32")
    assert main([*common, "--seed", "1"]) == 0
    paths = _json_tail(capsys.readouterr().out)["paths"]
    assert (project / "notes.txt").read_text() == "mine"
    assert json.loads((project / "search.json").read_text())["seed"] == 1
    assert sorted(os.listdir(tmp_path)) == ["googlenet"]  # no staging, no lock left
    rows = (project / "results.csv").read_text().splitlines()[1:]
    trials = {row.split(",")[0] for row in rows}
    assert {n[len("trial_"):] for n in os.listdir(project) if n.startswith("trial_")} == trials
    assert (project / "results.csv").read_bytes() != old["results.csv"]
    for name in ("csv", "markdown", "pareto", "best_model"):
        assert paths[name].startswith(str(project) + os.sep) and os.path.exists(paths[name])
    keras.saving.load_model(paths["best_model"], compile=False)


def test_a_second_search_on_the_same_project_is_refused_at_once(tmp_path, capsys):
    project = tmp_path / "googlenet"
    with run_lock.exclusive(project, "googlenet-tune"):  # as a running search holds it
        before = _contents(tmp_path)
        # A folder that is not there: refused for the lock first, before any data loads.
        code = main([*TINY_ARGS, "--max-trials", "1", "--directory", str(tmp_path),
                     "--dataset", f"folder:{tmp_path / 'not-loaded'}"])
        assert _contents(tmp_path) == before  # nothing written: no search.json
    err = capsys.readouterr().err
    assert code == EXIT_BAD_ARGUMENTS, err
    assert f"process {os.getpid()}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_sigterm_stops_a_search_like_ctrl_c(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_googlenet_training.cli.tune", *TINY_ARGS,
         "--max-trials", "2", "--directory", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        deadline = time.monotonic() + 400
        while not (tmp_path / "googlenet" / "trial_0").exists():  # the first trial started
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: re-run the same command")
    assert not os.path.exists(run_lock.lock_path(tmp_path / "googlenet"))


# ------------------------------------------------------------------ no score, no success


@pytest.mark.parametrize("max_trials", [2, 3])
@pytest.mark.slow
def test_cli_fails_when_no_trial_scores(tmp_path, monkeypatch, capsys, max_trials):
    # The verified pitfall: KerasTuner imports tensorboard in every trial and swallows
    # the error, so a search can "succeed" having trained nothing.
    monkeypatch.setitem(sys.modules, "tensorboard.plugins.hparams", None)
    code = main([*TINY_ARGS, "--max-trials", str(max_trials), "--directory", str(tmp_path)])
    assert code == EXIT_SEARCH_FAILED
    err = capsys.readouterr().err
    assert "no trial produced a score" in err or "consecutive failures" in err
    assert "| failed |" in (tmp_path / "googlenet" / "results.md").read_text()


# ------------------------------------------------------------------ distributed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_distributed_search_runs_every_trial_exactly_once(tmp_path):
    max_trials = 3
    launcher = subprocess.Popen(
        [sys.executable, "-m", "keras_googlenet_training.cli.tune", *TINY_ARGS, "--workers", "2",
         "--max-trials", str(max_trials), "--steps-per-epoch", "1", "--validation-steps", "1",
         "--replicas", "2", "--directory", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        output, _ = launcher.communicate(timeout=240)
    finally:
        if launcher.poll() is None:  # timed out: the chief and workers share its group
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    assert launcher.returncode == 0, output[-3000:]
    assert "[chief]" in output and "best: trial" in output

    project = tmp_path / "googlenet"
    executions = read_executions(str(project / EXECUTIONS_DIR))
    trial_ids = [e["trial_id"] for e in executions]
    assert sorted(trial_ids) == [str(i) for i in range(max_trials)]  # each exactly once
    assert {e["status"] for e in executions} == {"completed"}
    assert {e["tuner_id"] for e in executions} <= {"tuner0", "tuner1"}
    for trial_id in trial_ids:
        trial = json.loads((project / f"trial_{trial_id}" / "trial.json").read_text())
        assert trial["status"] == "COMPLETED" and trial["score"] is not None
    assert (project / "best" / "inference.keras").exists()
    for worker in ("tuner0", "tuner1"):  # --replicas: each trial under MirroredStrategy
        assert "2 replica(s)" in (project / "logs" / f"{worker}.log").read_text()
    # no orphans: every worker process is gone
    time.sleep(0.5)
    assert not any(_alive(pid) for pid in {e["pid"] for e in executions})
