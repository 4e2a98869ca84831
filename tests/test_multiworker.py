"""MultiWorkerMirroredStrategy on loopback: in-sync workers, parity with one process, resume.

Every multi-worker run goes through the real launcher (`googlenet-train --workers 2`),
which starts two TensorFlow processes talking over 127.0.0.1.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from _processes import alive as _alive

from keras_googlenet_training import run_dir as run_dir_lib
from keras_googlenet_training.multiworker import ClusterInfo, cluster_from_tf_config
from keras_googlenet_training.train_config import TrainConfig

SMALL = ["--input-size", "65", "--width-multiplier", "0.25", "--batch-size", "8",
         "--steps-per-epoch", "4", "--learning-rate", "3e-3"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _descendants(pid):
    """PIDs of every live descendant of `pid` (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parents.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                continue
    found, stack = [], [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _launch(*args, tmpdir=None):
    env = ENV if tmpdir is None else {**ENV, "TMPDIR": str(tmpdir)}
    return subprocess.Popen([sys.executable, "-m", "keras_googlenet_training.cli.train", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _our_temp_files(tmpdir):
    return [n for n in os.listdir(tmpdir) if n.startswith("keras_googlenet")]


def _wait_collecting_workers(process, timeout=400):
    """Wait for the launcher; return (exit code, output, every worker PID seen)."""
    seen = set()
    deadline = time.time() + timeout
    while process.poll() is None and time.time() < deadline:
        seen.update(_descendants(process.pid))
        time.sleep(0.3)
    if process.poll() is None:
        process.kill()
    output = process.communicate()[0]
    return process.returncode, output, seen


EPOCHS = 4  # a worker is killed once 2 are backed up; the same command runs the rest


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory):
    """Two workers on loopback. One is SIGKILLed once 2 epochs are backed up; the launcher
    must stop the job. Then the same command resumes the run to the end."""
    out = tmp_path_factory.mktemp("mw")
    tmpdir = tmp_path_factory.mktemp("mw-tmp")
    args = [*SMALL, "--epochs", str(EPOCHS), "--workers", "2", "--output-dir", str(out),
            "--run-name", "mw"]
    run = out / "mw"
    pointer = run / "backup" / "phase0" / "latest.json"
    process = _launch(*args, tmpdir=tmpdir)
    workers = set()
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            workers.update(_descendants(process.pid))
            if pointer.exists() and json.loads(pointer.read_text())["epoch"] >= 2:
                break
            assert process.poll() is None, process.communicate()[0][-3000:]
            time.sleep(0.2)
        else:
            pytest.fail("no backup of epoch 2 appeared")
        victim = max(workers)  # a worker process (the launcher's newest child)
        os.kill(victim, signal.SIGKILL)
        code, _, seen = _wait_collecting_workers(process, timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    killed = {
        "code": code,
        "orphans": [pid for pid in workers | seen if _alive(pid)],
        "completed": json.loads(pointer.read_text())["epoch"],
        "finished": (run / "metrics.json").exists(),
        "temp_files": _our_temp_files(tmpdir),
    }
    killed["backup_exists"] = (pointer.parent / f"epoch-{killed['completed']}.weights.h5").exists()

    code, output, resumed_workers = _wait_collecting_workers(_launch(*args, tmpdir=tmpdir))
    assert code == 0, output[-4000:]
    return run, output, resumed_workers, tmpdir, killed


@pytest.mark.slow
def test_a_killed_worker_stops_the_job_and_leaves_its_backup(two_worker_run):
    killed = two_worker_run[-1]
    assert killed["code"] != 0  # the launcher noticed and stopped the job
    assert killed["orphans"] == []  # no process left behind after the failure
    assert killed["completed"] >= 2 and killed["backup_exists"]
    assert not killed["finished"]
    # The killed worker could not clean up; the launcher removed its scratch directory.
    assert killed["temp_files"] == []


@pytest.mark.slow
def test_the_same_command_resumes_in_sync_with_the_uninterrupted_step_count(two_worker_run):
    run, output, workers, tmpdir, _ = two_worker_run
    assert "(resuming)" in output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["strategy"] == "multi-worker" and metrics["workers"] == 2
    assert metrics["replicas"] == 2 and metrics["global_batch"] == 16
    assert metrics["total_steps"] == EPOCHS * 4 and metrics["epochs_completed"] == EPOCHS
    assert run_dir_lib.read_history(run / "history.csv")["epoch"] == list(range(EPOCHS))
    assert metrics["worker_weights_max_abs_diff"] == 0.0  # identical trainable weights
    assert {"model.keras", "inference.keras", "history.csv", "curves.png"} <= set(os.listdir(run))
    assert "global batch 16" in output  # the chief's progress is streamed
    assert len(workers) >= 2
    assert _our_temp_files(tmpdir) == []  # worker scratch and launcher logs removed


@pytest.mark.slow
def test_launcher_leaves_no_process_behind_after_success(two_worker_run):
    _, _, workers, _, _ = two_worker_run
    assert workers and not [pid for pid in workers if _alive(pid)]


@pytest.mark.slow
def test_loss_curve_matches_single_process_training_at_the_same_global_batch(
        two_worker_run, tmp_path):
    run, _, _, _, _ = two_worker_run
    result = subprocess.run(
        [sys.executable, "-m", "keras_googlenet_training.cli.train", *SMALL, "--epochs", "2",
         "--batch-size", "16",
         "--loop", "custom", "--output-dir", str(tmp_path), "--run-name", "one"],
        env=ENV, capture_output=True, text=True, timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single = run_dir_lib.read_history(tmp_path / "one" / "history.csv")
    # The first two epochs, trained before the kill (the resumed ones restart the data).
    multi = {key: values[:2] for key, values in
             run_dir_lib.read_history(run / "history.csv").items()}
    # One process, one replica of 16 against two workers of 8: same global batch, same
    # seeded data order and augmentation. Dropout masks and BatchNorm's batches (16 vs 2x8)
    # differ. Stated tolerance: 8 %. Measured: within 2 % on an Intel Xeon (AMX); on an AMD
    # EPYC the first epoch's loss differs by 5.5 % (4.10 vs 4.33, the code before #13 too)
    # and the second by 1.5 %. A replica-scaling bug would be off by 2x. (2 replicas in one
    # process gave the same figures at 4x the test time: MirroredStrategy traces each.)
    np.testing.assert_allclose(multi["loss"], single["loss"], rtol=0.08)
    np.testing.assert_allclose(multi["val_main_loss"], single["val_main_loss"], rtol=0.08)


def test_tf_config_is_parsed_and_explained():
    config = {"cluster": {"worker": ["a:1", "b:2", "c:3"]}, "task": {"type": "worker", "index": 1}}
    info = cluster_from_tf_config({"TF_CONFIG": json.dumps(config)})
    assert info == ClusterInfo("worker", 1, 3) and not info.is_chief
    assert ClusterInfo("worker", 0, 3).is_chief and ClusterInfo("chief", 0, 3).is_chief
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        cluster_from_tf_config({})
    with pytest.raises(ValueError, match="not a valid cluster spec"):
        cluster_from_tf_config({"TF_CONFIG": "{not json"})
    with pytest.raises(ValueError, match="task type must be"):
        cluster_from_tf_config({"TF_CONFIG": json.dumps(
            {"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}})})


def test_multi_worker_arguments_are_validated():
    with pytest.raises(ValueError, match="Model.fit fails there"):
        TrainConfig(strategy="multi-worker", loop="fit").resolved()
    with pytest.raises(ValueError, match="`replicas` must be None under the multi-worker"):
        TrainConfig(strategy="multi-worker", replicas=2).resolved()
    with pytest.raises(ValueError, match="`strategy` must be one of"):
        TrainConfig(strategy="parameter-server").resolved()
    assert TrainConfig(strategy="multi-worker").resolved().loop == "custom"


def test_workers_must_be_positive(capsys):
    from keras_googlenet_training.cli.train import main

    assert main(["--workers", "0"]) == 2
    assert "`--workers` must be a positive int" in capsys.readouterr().err
