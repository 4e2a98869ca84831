"""The optimizer of a training phase: learning-rate schedule, weight decay and EMA."""

from __future__ import annotations

import keras

from keras_googlenet import optimizers


def learning_rate_schedule(config, steps_per_epoch, epochs, base_lr):
    total = max(1, steps_per_epoch * epochs)
    if config.schedule == "constant":
        return base_lr
    if config.schedule == "paper":
        # "decreasing the learning rate by 4% every 8 epochs" (paper, Section 6)
        return keras.optimizers.schedules.ExponentialDecay(
            base_lr, decay_steps=8 * steps_per_epoch, decay_rate=0.96, staircase=True
        )
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, warmup_target=base_lr, warmup_steps=warmup
        )
    return keras.optimizers.schedules.CosineDecay(base_lr, decay_steps=total)


def ema_momentum_for(total_steps):
    """Average over about the last 5 % of training (at least 10 steps).

    Keras' EMA has no warm-up: with a fixed 0.99-0.9999 a short run would be evaluated
    on weights dominated by its first, poor steps (measured on digits: 30 % val accuracy
    with 0.99 after 176 steps, 99 % with 0.9).
    """
    window = max(10.0, total_steps / 20)
    return min(1.0 - 1.0 / window, 0.9999)


def make_optimizer(config, learning_rate, total_steps):
    common = dict(
        learning_rate=learning_rate,
        weight_decay=config.weight_decay or None,
        use_ema=config.ema,
        ema_momentum=(
            config.ema_momentum if config.ema_momentum is not None
            else ema_momentum_for(total_steps)
        ),
    )
    if config.optimizer == "sgd":
        return optimizers.SGD(momentum=0.9, **common)
    return optimizers.Adam(**common)
