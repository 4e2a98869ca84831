"""The private Keras names this project relies on, checked by name and behaviour.

Keras has no public API for these. pyproject does not pin Keras below its next minor
release (that would hold every user of the model library back); instead this file fails,
naming the internal, on the first Keras that changes one, before a training run does.
"""

import inspect

import keras
import numpy as np

from keras_googlenet import GoogLeNet
from keras_googlenet.layers import FusedBatchNormalization


def test_fit_starts_at_the_private_initial_epoch():
    # training/multiworker.py EpochBackup clears `_initial_epoch` so that a later fit is not
    # dragged back to an earlier phase's epoch.
    from keras.src.backend.tensorflow import trainer

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert hasattr(model, "_initial_epoch")
    assert "self._initial_epoch or initial_epoch" in inspect.getsource(
        trainer.TensorFlowTrainer.fit)


def test_swap_ema_weights_tracks_whether_the_average_is_in_the_model():
    # training/train.py: after a fit that ran no epoch, the average is put in place by hand.
    callback = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
    assert callback._ema_weights_in_model is False
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(use_ema=True), "mse")
    model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=1, verbose=0,
              validation_data=(np.zeros((2, 2)), np.zeros((2, 1))), callbacks=[callback])
    assert callback._ema_weights_in_model is True  # swapped in at the epoch's end


def test_functional_models_keep_nodes_by_depth():
    # keras_googlenet/export/experimental.py walks the graph through it.
    model = GoogLeNet(input_shape=(75, 75, 3), classes=3, width_multiplier=0.25)
    depths = model._nodes_by_depth
    assert isinstance(depths, dict) and len(depths) > 50
    operations = {node.operation.name for nodes in depths.values() for node in nodes
                  if node.operation is not None}
    assert {"conv1_conv", "pool1", "predictions"} <= operations


def test_the_fused_batch_norm_saves_under_keras_own_name():
    # keras_googlenet/layers.py gives FusedBatchNormalization Keras' public name, so that
    # saved files load in plain Keras; it goes through this private table.
    from keras.src import api_export

    names = api_export.REGISTERED_OBJS_TO_NAMES
    assert names[keras.layers.BatchNormalization] == "keras.layers.BatchNormalization"
    assert names[FusedBatchNormalization] == names[keras.layers.BatchNormalization]
    config = keras.saving.serialize_keras_object(FusedBatchNormalization())
    assert (config["module"], config["class_name"]) == ("keras.layers", "BatchNormalization")
