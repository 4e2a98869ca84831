"""`GoogLeNetImageClassifier`: GoogLeNet's main classifier as a KerasHub `ImageClassifier`."""

from __future__ import annotations

import keras
from keras_hub.models import ImageClassifier, Task

from keras_googlenet.googlenet import check_activation, check_rate
from keras_googlenet.hub.backbone import GoogLeNetBackbone
from keras_googlenet.hub.preprocessor import GoogLeNetImageClassifierPreprocessor


@keras.saving.register_keras_serializable(package="keras_googlenet")
class GoogLeNetImageClassifier(ImageClassifier):
    """GoogLeNet's main classifier on a `GoogLeNetBackbone`, with its preprocessing inside.

    The head is `keras_googlenet.GoogLeNet`'s: `avg_pool` (global average pooling),
    `dropout` and the fully-connected `predictions` layer, computed in float32 (safe under a
    mixed-precision policy). With the backbone, the layer names and weights are those of
    `GoogLeNet(include_top=True, ...)`. The auxiliary heads are training aids and are not
    part of the task.

    Loading a preset with another `num_classes`
    (`keras_hub.models.ImageClassifier.from_preset(preset, num_classes=5)`) keeps the
    backbone's weights and builds a new, randomly initialised `predictions` layer, as for
    every KerasHub classifier.

    Args:
        backbone: a `GoogLeNetBackbone`.
        num_classes: number of classes, a positive int.
        preprocessor: a `GoogLeNetImageClassifierPreprocessor` that `fit`, `predict` and
            `evaluate` apply to raw images, or `None` for preprocessed inputs.
        pooling: `"avg"` (GoogLeNet's, the default) or `"max"` global pooling of the
            backbone's feature map.
        activation: activation of `predictions`: `None` for logits (KerasHub's default;
            `compile()` then uses a from-logits loss) or a Keras activation name such as
            `"softmax"`.
        dropout: dropout rate before `predictions` (the paper: 0.4).
        **kwargs: `name` and `compile`, as for `keras_hub.models.ImageClassifier`.

    Example:
    ```python
    import keras_googlenet  # registers the classes
    classifier = keras_hub.models.ImageClassifier.from_preset("path/to/preset", num_classes=5)
    classifier.backbone.trainable = False
    classifier.fit(uint8_images, labels, epochs=3)
    ```
    """

    backbone_cls = GoogLeNetBackbone
    preprocessor_cls = GoogLeNetImageClassifierPreprocessor

    def __init__(
        self,
        backbone,
        num_classes,
        preprocessor=None,
        pooling="avg",
        activation=None,
        dropout=0.4,
        **kwargs,
    ):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(
                f"`num_classes` must be a positive int; received num_classes={num_classes!r}."
            )
        if pooling not in ("avg", "max"):
            raise ValueError(f"`pooling` must be 'avg' or 'max'; received pooling={pooling!r}.")
        check_rate("dropout", dropout)
        check_activation("activation", activation)

        # === Layers (GoogLeNet's head names) ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        if pooling == "avg":
            self.pooler = keras.layers.GlobalAveragePooling2D(name="avg_pool")
        else:
            self.pooler = keras.layers.GlobalMaxPooling2D(name="max_pool")
        self.output_dropout = keras.layers.Dropout(dropout, name="dropout")
        # float32 so softmax stays accurate under a mixed-precision policy (as GoogLeNet).
        self.output_dense = keras.layers.Dense(
            num_classes, activation=activation, dtype="float32", name="predictions"
        )

        # === Functional model ===
        inputs = self.backbone.input
        x = self.backbone(inputs)
        x = self.pooler(x)
        x = self.output_dropout(x)
        outputs = self.output_dense(x)
        # ImageClassifier.__init__ would build its own head ("pooler", "output_dropout").
        Task.__init__(self, inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.activation = activation
        self.pooling = pooling
        self.dropout = dropout

    def load_task_weights(self, filepath):
        """Load the head's weights (`task.weights.h5`), naming the head on a mismatch."""
        try:
            super().load_task_weights(filepath)
        except Exception as error:  # a shape mismatch deep in h5 loading
            raise ValueError(
                f"{filepath} does not hold the head of this {type(self).__name__} "
                f"(num_classes={self.num_classes}, pooling={self.pooling!r}, on "
                f"{self.backbone.describe()}). Cause: {error}"
            ) from error
