"""Training across processes and hosts with `tf.distribute.MultiWorkerMirroredStrategy`.

Keras 3.15's `Model.fit` fails under MultiWorkerMirroredStrategy at the first step
("Attempt to convert a value (PerReplica...) with an unsupported type"), so training
there goes through `CustomLoop`: `strategy.run` over a distributed dataset, the loss of
every head weighted as `compile_googlenet` configured it and averaged over the global
batch with `tf.nn.compute_average_loss`, and the Keras optimizer's `apply_gradients`
(which also keeps the EMA). It drives the same Keras callbacks as `fit` (CSV history,
TensorBoard, best checkpoint, EMA swap, progress), and it also runs on a single host
(`googlenet-train --loop custom`), which is how its results are checked against the
multi-process ones.

The cluster comes from `TF_CONFIG`, as Kubeflow's TFJob and other launchers set it:
`{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker",
"index": 0}}`. Worker 0 is the chief: only it writes the run directory; the other
workers write what they must to a temporary directory that is removed at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time

import keras
import tensorflow as tf

from keras_googlenet import _compat
from keras_googlenet_training import launcher
from keras_googlenet_training import run_dir as run_dir_lib

# Set by `launch_local_workers`: where each worker keeps its scratch directory.
WORKER_SCRATCH_ENV = "KERAS_GOOGLENET_WORKER_SCRATCH"


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    task_type: str
    task_id: int
    num_workers: int

    @property
    def is_chief(self):
        # TF's convention: an explicit "chief" task, or worker 0 when there is none.
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_id == 0)


def worker_scratch_dir(run_name, task_id, environ=None):
    """A new directory for a non-chief worker's own files (history, logs, best weights).

    Under `launch_local_workers` it is made inside the launcher's temporary directory,
    which the launcher removes however the worker ends, SIGKILL included. Elsewhere it is
    a fresh temporary directory; `train` removes it when the worker returns or raises.
    """
    environ = os.environ if environ is None else environ
    parent = environ.get(WORKER_SCRATCH_ENV) or None
    if parent:
        os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"keras_googlenet-{run_name}-worker{task_id}-", dir=parent)


def cluster_from_tf_config(environ=None):
    """Parse `TF_CONFIG`; a clear error when it is missing or malformed."""
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "`--strategy multi-worker` needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
            '"task": {"type": "worker", "index": 0}} (or use --workers N to start N local '
            "workers on 127.0.0.1)."
        )
    try:
        config = json.loads(raw)
        cluster = config["cluster"]
        task = config["task"]
        workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
        info = ClusterInfo(task["type"], int(task["index"]), workers)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not a valid cluster spec ({error}): {raw!r}") from None
    if info.task_type not in ("worker", "chief") or workers < 1:
        raise ValueError(
            f"TF_CONFIG task type must be 'worker' or 'chief' in a cluster with workers; "
            f"received {raw!r}."
        )
    return info


def make_multi_worker_strategy():
    """The strategy; must be created before TensorFlow runs any op in this process."""
    return tf.distribute.MultiWorkerMirroredStrategy()


class EpochBackup(keras.callbacks.Callback):
    """Back up weights and optimizer state after every epoch; restore them on restart.

    Every worker saves (TF's rule for multi-worker saving), the chief into `backup_dir`
    and the others into a temporary directory that is emptied right away. Each backup is
    written atomically as `epoch-N.weights.h5` and only then named in `latest.json`, so a
    kill at any moment leaves a consistent pair. All workers restore from `backup_dir`,
    which must therefore be on a file system they share (a single host, NFS, GCS).

    With `restore_on_train_begin=True` it restores itself when `Model.fit` starts and
    tells fit which epoch to continue from, like `keras.callbacks.BackupAndRestore` (which
    writes its file in place: a kill during the write leaves an unreadable backup).
    """

    def __init__(self, backup_dir, is_chief=True, keep=2, restore_on_train_begin=False):
        super().__init__()
        self.backup_dir = backup_dir
        self.is_chief = is_chief
        self.keep = keep
        self.restore_on_train_begin = restore_on_train_begin

    def on_train_begin(self, logs=None):
        if self.restore_on_train_begin:
            # A value left by an earlier fit (an earlier training phase) must be cleared
            # when there is nothing to restore.
            _compat.set_fit_initial_epoch(self.model, self.restore() or None)

    def _pointer(self):
        return os.path.join(self.backup_dir, "latest.json")

    def completed_epochs(self):
        try:
            with open(self._pointer(), encoding="utf-8") as f:
                return json.load(f)["epoch"]
        except (OSError, ValueError, KeyError):
            return 0

    def restore(self):
        """Load the latest backup into the model; return the number of completed epochs."""
        epoch = self.completed_epochs()
        if epoch:
            optimizer = self.model.optimizer
            if not optimizer.built:
                optimizer.build(self.model.trainable_variables)
            self.model.load_weights(os.path.join(self.backup_dir, f"epoch-{epoch}.weights.h5"))
            self._restore_seed_states()
        return epoch

    def _seed_states(self):
        # Dropout's random state: not in `.weights.h5`, yet a resume that restarted it would
        # draw other masks than the uninterrupted run.
        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]

    def _restore_seed_states(self):
        try:
            with open(self._pointer(), encoding="utf-8") as f:
                saved = json.load(f).get("seed_states")
        except (OSError, ValueError, AttributeError):
            saved = None
        states = self._seed_states()
        if saved is not None and len(saved) == len(states):  # backups of older versions: none
            for variable, value in zip(states, saved, strict=True):
                variable.assign(value)

    def on_epoch_end(self, epoch, logs=None):
        from keras_googlenet_training.callbacks import nonfinite_variables

        completed = epoch + 1
        if nonfinite_variables(self.model):
            # A diverged epoch is not a completed one: the last good backup stays the
            # latest, so a rerun resumes from finite weights. Same on every worker (the
            # weights are in sync), so no save is skipped on one worker only.
            return
        if not self.is_chief:
            scratch = tempfile.mkdtemp(prefix="keras_googlenet-worker-backup-")
            try:
                self.model.save_weights(os.path.join(scratch, "epoch.weights.h5"))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return
        path = os.path.join(self.backup_dir, f"epoch-{completed}.weights.h5")
        run_dir_lib.save_weights(self.model, path)
        seeds = [[int(x) for x in v.numpy()] for v in self._seed_states()]
        run_dir_lib.write_json(self._pointer(), {"epoch": completed, "seed_states": seeds})
        for old in range(1, completed - self.keep + 1):
            stale = os.path.join(self.backup_dir, f"epoch-{old}.weights.h5")
            if os.path.exists(stale):
                os.remove(stale)


class CustomLoop:
    """`strategy.run` training of a model compiled by `compile_googlenet`."""

    def __init__(self, model, strategy, global_batch):
        self.model = model
        self.strategy = strategy
        self.global_batch = global_batch
        self.multi_output = isinstance(model.output, dict)
        self.heads = list(model.output) if self.multi_output else ["main"]
        losses = model.loss if self.multi_output else {"main": model.loss}
        weights = (model.get_compile_config().get("loss_weights") or {}) \
            if self.multi_output else {}
        self.losses = {h: losses[h] for h in self.heads}
        self.loss_weights = {h: float(weights.get(h, 1.0)) for h in self.heads}
        if not model.optimizer.built:
            # Otherwise the first step creates the optimizer's variables while tracing and
            # tf.function traces it a second time (11 s of 2-replica tracing, measured).
            model.optimizer.build(model.trainable_variables)
        self._train_step = tf.function(self._distributed_train_step)
        self._eval_step = tf.function(self._distributed_eval_step)

    def _as_dict(self, value):
        return value if self.multi_output else {"main": value}

    def _per_example(self, labels, outputs):
        total = 0.0
        sums = {}
        for head in self.heads:
            # Loss.call gives per-example values: the reduction happens below.
            per_example = self.losses[head].call(labels[head], outputs[head])
            sums[f"{head}_loss"] = tf.reduce_sum(per_example)
            predicted = tf.cast(tf.argmax(outputs[head], axis=-1), labels[head].dtype)
            correct = tf.cast(tf.equal(predicted, tf.reshape(labels[head], [-1])), "float32")
            sums[f"{head}_correct"] = tf.reduce_sum(correct)
            total += self.loss_weights[head] * per_example
        sums["loss"] = tf.reduce_sum(total)
        sums["count"] = tf.cast(tf.shape(total)[0], "float32")
        return total, sums

    def _replica_train(self, images, labels):
        labels = self._as_dict(labels)
        optimizer = self.model.optimizer
        with tf.GradientTape() as tape:
            outputs = self._as_dict(self.model(images, training=True))
            per_example, sums = self._per_example(labels, outputs)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)
            scaled = optimizer.scale_loss(loss)  # loss scaling under mixed_float16
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return sums

    def _replica_eval(self, images, labels):
        outputs = self._as_dict(self.model(images, training=False))
        return self._per_example(self._as_dict(labels), outputs)[1]

    def _reduce(self, per_replica):
        return {
            k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()
        }

    def _distributed_train_step(self, iterator):
        return self._reduce(self.strategy.run(self._replica_train, args=next(iterator)))

    def _distributed_eval_step(self, batch):
        return self._reduce(self.strategy.run(self._replica_eval, args=batch))

    def _logs(self, sums, prefix=""):
        count = max(float(sums["count"]), 1.0)
        logs = {f"{prefix}loss": float(sums["loss"]) / count}
        for head in self.heads:
            logs[f"{prefix}{head}_loss"] = float(sums[f"{head}_loss"]) / count
            logs[f"{prefix}{head}_accuracy"] = float(sums[f"{head}_correct"]) / count
        return logs

    def evaluate(self, dataset):
        """Loss and accuracy of every head over `dataset` (a distributed dataset)."""
        totals = None
        for batch in dataset:
            sums = self._eval_step(batch)
            totals = sums if totals is None else {k: totals[k] + v for k, v in sums.items()}
        return self._logs(totals or {"loss": 0.0, "count": 0.0,
                                     **{f"{h}_{s}": 0.0 for h in self.heads
                                        for s in ("loss", "correct")}})

    def fit(self, train_dataset, val_dataset, *, epochs, initial_epoch, steps_per_epoch,
            callbacks, backup):
        """Train from the last backup (or `initial_epoch`) to `epochs`, like `Model.fit`.

        `backup` (an `EpochBackup`, also in `callbacks` where its save should happen)
        restores the weights, optimizer state and epoch count of an interrupted run.
        """
        callback_list = keras.callbacks.CallbackList(
            callbacks, model=self.model, epochs=epochs, steps=steps_per_epoch, verbose=0,
        )
        first = max(initial_epoch, backup.restore())
        train_iterator = iter(self.strategy.experimental_distribute_dataset(train_dataset))
        val_distributed = self.strategy.experimental_distribute_dataset(val_dataset)
        callback_list.on_train_begin()
        for epoch in range(first, epochs):
            callback_list.on_epoch_begin(epoch)
            totals = None
            for step in range(steps_per_epoch):
                callback_list.on_train_batch_begin(step)
                sums = self._train_step(train_iterator)
                totals = sums if totals is None else {k: totals[k] + v for k, v in sums.items()}
                callback_list.on_train_batch_end(step, self._logs(totals))
                if self.model.stop_training:
                    break
            logs = self._logs(totals)
            callback_list.on_test_begin()
            logs.update({f"val_{k}": v for k, v in self.evaluate(val_distributed).items()})
            callback_list.on_test_end(logs)
            callback_list.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        callback_list.on_train_end()


PORT_ATTEMPTS = 3  # starts of the whole group when a worker's port was taken meanwhile


def launch_local_workers(argv, workers, stream=None, env=None, timeout=None):
    """Run `googlenet-train ARGV --strategy multi-worker` as `workers` local processes.

    Each gets a TF_CONFIG naming free 127.0.0.1 ports; the chief's output is streamed to
    `stream`, the others' kept in log files. If any worker fails (or on Ctrl-C or SIGTERM,
    or after `timeout` seconds) every worker is stopped: no process outlives the launcher.
    Returns the exit status (0 when all workers succeed).
    """
    stream = stream or sys.stdout
    log_dir = tempfile.mkdtemp(prefix="keras_googlenet-workers-")
    try:
        with launcher.sigterm_as_interrupt():
            for attempt in range(1, PORT_ATTEMPTS + 1):
                with launcher.ProcessGroup(stream) as group:
                    code = _run_workers(group, argv, workers, env, log_dir, timeout)
                    if code == 0 or attempt == PORT_ATTEMPTS or not group.lost_a_port():
                        _report_failures(group, stream)
                        return code
                stream.write("a worker's port was taken before it could bind it; starting "
                             "the workers again on new ports\n")
    except KeyboardInterrupt as error:
        return launcher.interrupted_status(error)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


def _run_workers(group, argv, workers, env, log_dir, timeout):
    # TensorFlow's server cannot share a held port: release them just before the start.
    with launcher.reserve_ports(workers) as reservation:
        ports = reservation.ports
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    command = [sys.executable, "-m", "keras_googlenet_training.cli.train", *argv,
               "--strategy", "multi-worker"]
    for index in range(workers):
        worker_env = {
            **os.environ, **(env or {}),
            "TF_CONFIG": json.dumps({"cluster": cluster,
                                     "task": {"type": "worker", "index": index}}),
            WORKER_SCRATCH_ENV: os.path.join(log_dir, "scratch"),
        }
        log_path = os.path.join(log_dir, f"worker-{index}.log") if index else None
        group.start(f"worker {index}", command, worker_env, log_path=log_path)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        codes = group.returncodes()
        failed = group.failed()
        if failed:
            return codes[failed[0]]
        if all(code == 0 for code in codes.values()):
            return 0
        if deadline is not None and time.monotonic() > deadline:
            group.out.write(f"workers did not finish within {timeout} s; stopping them\n")
            return 124
        time.sleep(0.2)


def _report_failures(group, stream):
    for name in group.failed():
        if name != "worker 0":  # the chief's output was streamed already
            code = group.processes[name].returncode
            stream.write(f"--- {name} failed (exit {code}):\n{group.tail(name)}")
