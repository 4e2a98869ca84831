"""Losses and the compile helper for GoogLeNet's main and auxiliary heads."""

import functools

import keras

from keras_googlenet import optimizers
from keras_googlenet.checks import rate
from keras_googlenet.model_card import OUTPUT_NAME, find_layer

__all__ = ["DEFAULT_LOSS_WEIGHTS", "SmoothedSparseCategoricalCrossentropy", "compile_googlenet",
           "head_targets"]

# The paper adds each auxiliary loss "with a discount weight (0.3)".
DEFAULT_LOSS_WEIGHTS = {"main": 1.0, "aux1": 0.3, "aux2": 0.3}


@keras.saving.register_keras_serializable(package="keras_googlenet")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy with label smoothing (Keras' sparse loss has none)."""

    def __init__(self, from_logits=False, label_smoothing=0.0,
                 name="sparse_categorical_crossentropy", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = from_logits
        self.label_smoothing = rate("label_smoothing", label_smoothing)

    def call(self, y_true, y_pred):
        if self.label_smoothing == 0.0:
            return keras.losses.sparse_categorical_crossentropy(
                y_true, y_pred, from_logits=self.from_logits)
        labels = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"),
                                   keras.ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            labels, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


def compile_googlenet(model, optimizer="adam", loss_weights=None, label_smoothing=0.0,
                      **compile_kwargs):
    """Compile a GoogLeNet (with or without aux heads) for integer class labels.

    Every head gets a (sparse) categorical cross-entropy, from logits when
    `classifier_activation=None`; with aux heads the losses weigh main 1.0, aux1 0.3, aux2 0.3
    as in the paper (override with `loss_weights`, e.g. `{"aux1": 0.5, "aux2": 0.5}`). The
    logs have each head's loss and accuracy: `main_accuracy` / `val_main_accuracy` (also
    without aux heads), `aux1_accuracy`, `aux2_accuracy`. Feed int labels, as
    `{"main": y, "aux1": y, "aux2": y}` with aux heads (`keras_googlenet.head_targets`).
    `optimizer="adam"` or `"sgd"` is `keras_googlenet.optimizers.Adam` / `SGD`: Keras'
    defaults and update rules, traced as one fused kernel per variable, which shortens the
    first training step (a Keras optimizer instance is used as it is). The optimizer is
    built for the variables trainable now: after changing `trainable`, compile again (as
    Keras asks anyway).

    Args:
        model: a GoogLeNet built with `include_top=True`; compiled in place.
        optimizer: `"adam"` (default) or `"sgd"` for this package's fused optimizers with
            Keras' defaults, or any Keras optimizer instance or name.
        loss_weights: per-head weights overriding the paper's, e.g. `{"aux1": 0.5}`; heads
            not named keep main 1.0, aux1 0.3, aux2 0.3. Without aux heads only `"main"`
            may be named, and it scales the one loss.
        label_smoothing: in [0, 1); spreads that much of each target over all classes.
        **compile_kwargs: passed to `model.compile` (`metrics`, `jit_compile`, ...); without
            `metrics`, each head gets a sparse categorical accuracy.

    Returns:
        `model`, compiled, its optimizer built.

    Raises:
        ValueError: `model` has no `predictions` layer, `loss_weights` names a head
            the model lacks, or `label_smoothing` is not in [0, 1).
    """
    if (classifier := find_layer(model, OUTPUT_NAME)) is None:
        raise ValueError(f"`model` has no layer {OUTPUT_NAME!r}: compile_googlenet needs a "
                         "GoogLeNet built with include_top=True.")
    head_loss = functools.partial(
        SmoothedSparseCategoricalCrossentropy, label_smoothing=label_smoothing,
        from_logits=classifier.activation is keras.activations.linear)
    if isinstance(optimizer, str) and optimizer.lower() in ("adam", "sgd"):
        optimizer = optimizers.Adam() if optimizer.lower() == "adam" else optimizers.SGD()
    loss_weights = dict(loss_weights or {})
    if isinstance(model.output, dict):
        heads = list(model.output)
        if unknown := sorted(set(loss_weights) - set(heads)):
            raise ValueError(f"`loss_weights` names unknown head {unknown[0]!r}; the model's "
                             f"heads are {heads}.")
        weights = {head: float(loss_weights.get(head, DEFAULT_LOSS_WEIGHTS.get(head, 1.0)))
                   for head in heads}
        compile_kwargs.setdefault("metrics", {
            head: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")] for head in heads})
        model.compile(optimizer=optimizer, loss={head: head_loss() for head in heads},
                      loss_weights=weights, **compile_kwargs)
    else:
        if set(loss_weights) - {"main"}:
            raise ValueError("`loss_weights` names aux heads but the model has none "
                             f"(include_aux=False); received {loss_weights!r}.")
        compile_kwargs.setdefault(
            "metrics", [keras.metrics.SparseCategoricalAccuracy(name="main_accuracy")])
        main_weight = loss_weights.get("main")
        model.compile(optimizer=optimizer, loss=head_loss(), **compile_kwargs,
                      loss_weights=None if main_weight is None else float(main_weight))
    # Create the optimizer's slots now, as Keras does under a distribution strategy: left to
    # the first train step, they are made while it is traced, which doubles that step's cost
    # for GoogLeNet's ~200 variables (benchmarks/first_step.py).
    model.optimizer.build(model.trainable_variables)
    return model


def head_targets(model, labels):
    """Labels in the structure `model` expects: a dict per head for a multi-output GoogLeNet."""
    if isinstance(model.output, dict):
        return {head: labels for head in model.output}
    return labels
