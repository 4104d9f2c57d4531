"""The frame generator every trainer draws its batches from."""

import keras
import numpy as np

from data.mulaw import QUANTIZATION_CHANNELS, mu_law_encode, mu_law_table

MODES = ("classifier", "regressor", "slice")
ENCODE_BLOCK = 1 << 20


class FrameGenerator(keras.utils.PyDataset):
    """Random windows across a set of signals, as a Keras `PyDataset`.

    The signals are joined into one float32 array plus one uint8 array of mu-law codes (1.25x the audio in
    memory, whatever the number of windows); each batch is gathered with one fancy index, with no Python loop
    per window and no one-hot targets.

    Batch `i` is a pure function of `(seed, position + i)`, the global step of the run: runs repeat exactly,
    a run resumed at any step sees the batches an uninterrupted run would have seen, and every step draws new
    windows. (Keras' adapter prefetches ahead and calls `on_epoch_end` early, so no state may change between
    epochs.) The dataset exposes `steps_per_epoch * epochs - position` batches: fit it with
    `steps_per_epoch=...` and `shuffle=False`, and set `position` (epoch x steps_per_epoch + step) to resume.
    With `reshuffle=False` (validation) it has `steps_per_epoch` batches, the same every time.

    Modes:
        - `"classifier"`: `x` = window[:-1] after the mu-law round trip, shape `(batch, frame_size, 1)`;
          `y` = window[1:] as int32 mu-law codes, shape `(batch, frame_size)`.
        - `"regressor"`: same `x`; `y` = window[1:] as float32 samples, shape `(batch, frame_size, 1)`.
        - `"slice"` (GAN): `x` = a float32 slice of `frame_size` samples, shape `(batch, frame_size, 1)`;
          signals shorter than a slice are padded with silence.

    Args:
        signals: list of 1-D float arrays in [-1, 1].
        frame_size: samples the model sees per window.
        batch_size: windows per batch.
        steps_per_epoch: batches per epoch.
        epochs: epochs the stream spans.
        mode: one of `"classifier"`, `"regressor"`, `"slice"`.
        seed: integer seed.
        reshuffle: draw new windows every epoch.
        quantization_channels: mu-law classes.
        **kwargs: passed to `keras.utils.PyDataset` (`workers`, `use_multiprocessing`, `max_queue_size`).

    Example:

    >>> import numpy as np
    >>> from data.frames import FrameGenerator
    >>> signal = np.sin(np.arange(8000) / 5.0).astype("float32")
    >>> frames = FrameGenerator([signal], frame_size=256, batch_size=4, steps_per_epoch=10)
    >>> x, y = frames[0]
    >>> x.shape, y.shape
    ((4, 256, 1), (4, 256))
    """

    def __init__(self, signals, frame_size, batch_size, steps_per_epoch, mode="classifier", seed=0,
                 reshuffle=True, quantization_channels=QUANTIZATION_CHANNELS, epochs=1, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        for name, value in (("frame_size", frame_size), ("batch_size", batch_size),
                            ("steps_per_epoch", steps_per_epoch)):
            if int(value) <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.frame_size = int(frame_size)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = int(steps_per_epoch)
        self.mode = mode
        self.seed = int(seed)
        self.reshuffle = bool(reshuffle)
        self.quantization_channels = int(quantization_channels)
        self.epochs = int(epochs)
        self.position = 0

        # A WaveNet window holds one more sample than the model sees: the last target.
        self.window = self.frame_size + (0 if mode == "slice" else 1)
        if mode == "slice":
            # Clips shorter than a slice are padded so they can still be drawn whole.
            signals = [np.pad(s, (0, max(0, self.window - len(s)))) for s in signals]
        signals = [np.asarray(s, dtype=np.float32) for s in signals if len(s) >= self.window]
        if not signals:
            raise ValueError(f"no signal is at least {self.window} samples long")
        # One signal is used as it is; several are joined once. Windows are only ever gathered per batch.
        self.audio = signals[0] if len(signals) == 1 else np.concatenate(signals)
        self.codes = None
        if mode != "slice":
            self.codes = np.empty(len(self.audio), np.uint8)
            for start in range(0, len(self.audio), ENCODE_BLOCK):  # blocks: temporaries stay small
                block = self.audio[start:start + ENCODE_BLOCK]
                self.codes[start:start + len(block)] = mu_law_encode(block, self.quantization_channels)
            self.table = mu_law_table(self.quantization_channels)
        lengths = np.array([len(s) for s in signals], dtype=np.int64)
        self.file_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        # Number of valid window starts per signal, and their running total, to draw uniformly over all of them.
        self.starts_per_signal = lengths - self.window + 1
        self.cumulative_starts = np.cumsum(self.starts_per_signal)

    def __len__(self):
        if not self.reshuffle:
            return self.steps_per_epoch
        return max(1, self.steps_per_epoch * self.epochs - self.position)

    def window_starts(self, index):
        """The start offsets (into the joined audio) of the windows of batch `index`."""
        step = int(index) + (self.position if self.reshuffle else 0)
        rng = np.random.default_rng([self.seed, step])
        draws = rng.integers(0, self.cumulative_starts[-1], size=self.batch_size)
        signal = np.searchsorted(self.cumulative_starts, draws, side="right")
        offset = draws - (self.cumulative_starts[signal] - self.starts_per_signal[signal])
        return self.file_starts[signal] + offset

    def __getitem__(self, index):
        if index >= len(self):
            raise IndexError(index)
        rows = self.window_starts(index)[:, None] + np.arange(self.window)[None, :]
        if self.mode == "slice":
            return (self.audio[rows][..., None],)
        codes = self.codes[rows]
        x = self.table[codes[:, :-1]][..., None]
        if self.mode == "classifier":
            return x, codes[:, 1:].astype(np.int32)
        return x, self.audio[rows[:, 1:]][..., None]

    def as_dataset(self, prefetch=2):
        """The same batches as a `tf.data.Dataset`, prefetched by one thread with autotuning off.

        On a 2-core machine tf.data's autotuning threads (what Keras gives a `PyDataset`) compete with the
        training step for the cores and now and then cost a quarter of its speed; one prefetch thread does not.
        The dataset reads `position` when it is iterated, so set that first.
        """
        import tensorflow as tf

        frame = self.frame_size
        x = tf.TensorSpec((None, frame, 1), tf.float32)
        if self.mode == "slice":
            signature = (x,)
        elif self.mode == "classifier":
            signature = (x, tf.TensorSpec((None, frame), tf.int32))
        else:
            signature = (x, tf.TensorSpec((None, frame, 1), tf.float32))

        def batches():
            for index in range(len(self)):
                yield self[index]

        options = tf.data.Options()
        options.autotune.enabled = False
        options.threading.private_threadpool_size = 1
        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(self)))  # Keras then knows its end
        return dataset.with_options(options).prefetch(prefetch)
