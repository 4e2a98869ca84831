"""Callbacks of the trainer: progress with images/s, best checkpoint, NaN guard."""

from __future__ import annotations

import math
import sys
import time

import keras
import numpy as np

from keras_googlenet_training import run_dir as run_dir_lib


def nonfinite_variables(model):
    """Names of the model's (and its optimizer's) variables holding NaN or inf.

    Checked before every backup or checkpoint: a NaN loss is not the only way weights go
    bad, and a saved NaN epoch would later be resumed as if it were good.
    """
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    return [v.path for v in variables
            if np.issubdtype(np.dtype(v.dtype), np.floating)
            and not np.all(np.isfinite(np.asarray(v.numpy(), dtype="float32")))]


class TrainingProgress(keras.callbacks.Callback):
    """A progress bar per epoch showing loss, main accuracy and images/s.

    Also measures training throughput; the first epoch (graph tracing) is excluded from
    `images_per_second` when there is more than one.
    """

    def __init__(self, global_batch, steps_per_epoch, stream=None):
        super().__init__()
        self.global_batch = global_batch
        self.steps_per_epoch = steps_per_epoch
        self.stream = stream or sys.stdout
        self.epoch_rates = []  # (epoch, images/s over the epoch's training steps)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_label = f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}"
        # A live bar on a terminal; one line per epoch in logs (CI, nohup, tee).
        self._live = self.stream.isatty()
        if self._live:
            print(self._epoch_label, file=self.stream, flush=True)
            self._bar = keras.utils.Progbar(self.steps_per_epoch, unit_name="step")
        self._start = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps = batch + 1
        if not self._live:
            return
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        values = [("img/s", self._steps * self.global_batch / elapsed)]
        for key in ("loss", "main_accuracy"):
            if logs and key in logs:
                values.append((key, float(logs[key])))
        self._bar.update(self._steps, values=values, finalize=False)

    def on_test_begin(self, logs=None):
        self._train_elapsed = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        train_time = getattr(self, "_train_elapsed", time.perf_counter() - self._start)
        self._train_elapsed = None
        rate = self._steps * self.global_batch / max(train_time or 1e-9, 1e-9)
        self.epoch_rates.append((epoch, rate))
        shown = [("img/s", rate)] + [
            (k, float(v)) for k, v in (logs or {}).items()
            if k in ("loss", "main_accuracy", "val_loss", "val_main_accuracy")
        ]
        if self._live:
            self._bar.update(self._steps, values=shown, finalize=True)
        else:
            took = time.perf_counter() - self._start
            text = " - ".join(f"{k}: {v:.4g}" for k, v in shown)
            print(f"{self._epoch_label} - {self._steps} steps in {took:.1f}s - {text}",
                  file=self.stream, flush=True)

    @property
    def images_per_second(self):
        rates = [r for _, r in self.epoch_rates]
        if len(rates) > 1:
            rates = rates[1:]
        return sum(rates) / len(rates) if rates else float("nan")


class PhaseCSVLogger(keras.callbacks.CSVLogger):
    """`CSVLogger` whose rows name the phase they trained in (`run_dir.PHASE_COLUMN`)."""

    def __init__(self, filename, phase, append=False):
        super().__init__(filename, append=append)
        self.phase = phase

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, {**(logs or {}), run_dir_lib.PHASE_COLUMN: self.phase})


class BestWeights(keras.callbacks.Callback):
    """Keep the weights with the best `monitor` (atomically written `.weights.h5`)."""

    def __init__(self, path, monitor="val_main_accuracy", mode="max"):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.sign = 1 if mode == "max" else -1
        self.best = None
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or math.isnan(value):
            return
        if self.best is None or self.sign * value > self.sign * self.best:
            if nonfinite_variables(self.model):
                return  # never checkpoint a diverged model, however its accuracy reads
            self.best, self.best_epoch = float(value), epoch
            run_dir_lib.save_weights(self.model, self.path)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM: `terminated`) during training; `epochs_completed` epochs are
    backed up in `run_dir` for a resume. `replacing`: it was an `--overwrite` replacement,
    so the finished run it was to replace is as it was."""

    def __init__(self, epochs_completed, run_dir, terminated=False, replacing=False):
        super().__init__(epochs_completed, run_dir)
        self.epochs_completed = epochs_completed
        self.run_dir = run_dir
        self.terminated = terminated
        self.replacing = replacing


class StopOnNaN(keras.callbacks.Callback):
    """`TerminateOnNaN` that remembers where, so the trainer can explain it."""

    def __init__(self):
        super().__init__()
        self.diverged_at = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = (self._epoch, batch)
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._batch = -1

    def on_train_batch_begin(self, batch, logs=None):
        self._batch = batch

    def on_epoch_end(self, epoch, logs=None):
        # First callback at epoch end: the backup and checkpoint that follow check too.
        if self.diverged_at is None and nonfinite_variables(self.model):
            self.diverged_at = (epoch, max(self._batch, 0))
            self.model.stop_training = True
