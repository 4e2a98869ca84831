"""tf.distribute strategy for one host: all local GPUs, or N logical CPU devices."""

from __future__ import annotations

import tensorflow as tf

from keras_googlenet.checks import positive_int


def make_strategy(replicas=None):
    """A `MirroredStrategy` over the local devices.

    With GPUs: over all of them (or the first `replicas`). On a CPU-only host,
    `replicas=N > 1` splits the CPU into N logical devices so multi-replica training
    (gradient all-reduce, per-replica batches) runs here too; this must happen before
    TensorFlow initialises its devices, i.e. before anything else touches TF ops.
    `replicas` None or 1 on a CPU gives the default (single-device) strategy.
    """
    replicas = positive_int("replicas", replicas, optional=True)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if replicas is not None and replicas > len(gpus):
            raise ValueError(
                f"`replicas={replicas}` but only {len(gpus)} GPU(s) are visible."
            )
        names = [f"/gpu:{i}" for i in range(replicas or len(gpus))]
        return tf.distribute.MirroredStrategy(devices=names)
    if replicas is None or replicas == 1:
        return tf.distribute.get_strategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
        )
    except RuntimeError as error:
        existing = len(tf.config.list_logical_devices("CPU"))
        if existing != replicas:
            raise ValueError(
                f"`replicas={replicas}`: TensorFlow is already initialised with {existing} "
                "CPU device(s), and logical devices can only be split before that. Start a "
                "new process (the googlenet-train CLI does this right)."
            ) from error
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(
        devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
