"""The WaveNet trainer's optimiser: Adam with an exponential moving average of the weights kept beside them."""

import contextlib

import keras
import numpy as np

from models.layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class AveragedAdam(keras.optimizers.Adam):
    """Adam that keeps an exponential moving average of the weights (Keras' `use_ema`) and never writes it into them.

    Keras' own `use_ema` overwrites the weights with their average at the end of every `fit`, so a run that is
    resumed mid-epoch (two `fit` calls) would go on from the average instead of the weights: not the run it
    continues. Here the average stays in the optimiser's variables, saved with it in every checkpoint, and
    `averaged_weights` puts it into the model only where it is used: validation, samples and the saved model.
    After each step `average = m * average + (1 - m) * weights` (`m` = `ema_momentum`; the first step copies).

    Args:
        ema_momentum: the average's momentum `m`; about `1 / (1 - m)` steps are averaged.
        **kwargs: `keras.optimizers.Adam` arguments (`learning_rate`, `global_clipnorm`, ...).

    Example:

    >>> model.compile(optimizer=AveragedAdam(ema_momentum=0.99, learning_rate=1e-3), loss="mse")
    >>> with averaged_weights(model):
    ...     model.save("averaged.keras")
    """

    def __init__(self, ema_momentum=0.99, **kwargs):
        kwargs.pop("use_ema", None)  # always on: it is in the saved config
        super().__init__(use_ema=True, ema_momentum=ema_momentum, **kwargs)

    def finalize_variable_values(self, var_list):
        pass  # the average is swapped in by `averaged_weights`, never left in the weights


def _averages(model):
    """The moving averages of `model`'s trainable variables, in their order, or `None` if its optimiser keeps
    none (or has not taken a step: then the averages are still zeros)."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer wraps the real one
    if not isinstance(optimizer, AveragedAdam) or not optimizer.built or int(optimizer.iterations.numpy()) == 0:
        return None
    return optimizer._model_variables_moving_average


@contextlib.contextmanager
def averaged_weights(model):
    """Inside the block `model` holds its optimiser's moving average of its weights; after it, its own weights
    again, bit for bit. A model without an `AveragedAdam` (or before its first step) is left as it is."""
    averages = _averages(model)
    if averages is None:
        yield model
        return
    variables = model.trainable_variables
    saved = [np.array(variable.numpy()) for variable in variables]
    for variable, average in zip(variables, averages):
        variable.assign(average)
    try:
        yield model
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
