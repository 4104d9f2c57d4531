"""The network of the original script (a Keras 1 "simple generative model" from a blog post), re-created in
Keras 3 so that bench/training.py can time it in the same run as ours. Bench-only: nothing outside bench/
imports it.

What the original does, and what is kept here:
- input: a frame of 2048 samples, shape (2048, 1); one target per frame, the mu-law code (0..255) of the
  sample that follows the frame; batches of 20 frames; SGD with Keras' defaults, categorical cross-entropy
  and an accuracy metric.
- 21 blocks. Each: two dilated convolutions of 64 filters, width 2, "same" padding (not causal), one with
  tanh and one with sigmoid, multiplied; a 1x1 convolution to ONE channel with ReLU, which is both the
  block's skip output and, added to the block's input, its residual output. So the residual stream is one
  channel wide. Dilations: 2 for the first block, then 2 ** ((i + 2) % 9) for i in 0..19 (4, 8, ..., 256, 1,
  2, ...).
- head: the sum of the 21 skips, ReLU, a 1x1 convolution (1 channel, ReLU), a 1x1 convolution (1 channel),
  Flatten, and a softmax Dense layer as wide as the frame (2048, as in the original, although only 256
  classes are ever targets).

`AtrousConvolution1D(..., atrous_rate=r, border_mode='same')` is `Conv1D(..., dilation_rate=r,
padding="same")` here; `Convolution1D(1, 1)` is `Conv1D(1, 1)`.
"""

import numpy as np

FRAME_SIZE = 2048
BATCH_SIZE = 20
CLASSES = 256  # targets are mu-law codes; the output layer is nevertheless FRAME_SIZE wide


def dilations(blocks=21):
    """The original's dilation rates: 2, then 2 ** ((i + 2) % 9) for i in range(blocks - 1)."""
    return [2] + [2 ** ((i + 2) % 9) for i in range(blocks - 1)]


def build_original_wavenet(frame_size=FRAME_SIZE, filters=64, width=2, blocks=21):
    """The original network, compiled as the original compiles it (categorical cross-entropy, SGD, accuracy)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(frame_size, 1))
    net, skips = inputs, []
    for rate in dilations(blocks):
        residual = net
        tanh_out = layers.Conv1D(filters, width, dilation_rate=rate, padding="same", activation="tanh")(net)
        sigmoid_out = layers.Conv1D(filters, width, dilation_rate=rate, padding="same", activation="sigmoid")(net)
        merged = layers.Multiply()([tanh_out, sigmoid_out])
        skip = layers.Conv1D(1, 1, padding="same", activation="relu")(merged)
        net = layers.Add()([skip, residual])
        skips.append(skip)
    net = layers.Add()(skips)
    net = layers.Activation("relu")(net)
    net = layers.Conv1D(1, 1, activation="relu")(net)
    net = layers.Conv1D(1, 1)(net)
    net = layers.Flatten()(net)
    outputs = layers.Dense(frame_size, activation="softmax")(net)
    model = keras.Model(inputs, outputs, name="original_wavenet")
    model.compile(loss="categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    return model


def random_batches(count, frame_size=FRAME_SIZE, batch_size=BATCH_SIZE, seed=0):
    """`count` batches shaped as the original feeds them: frames (batch, frame_size, 1) in [-1, 1], and one-hot
    targets (batch, frame_size) whose hot index, the one target per frame, is a code in [0, 256)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (count * batch_size, frame_size, 1)).astype(np.float32)
    y = np.zeros((count * batch_size, frame_size), np.float32)
    y[np.arange(len(y)), rng.integers(0, CLASSES, len(y))] = 1.0
    return x, y
