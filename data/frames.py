"""The frame generator every trainer draws its batches from."""

import keras
import numpy as np

from data.features import CONTEXT_FRAMES
from data.mulaw import QUANTIZATION_CHANNELS, mu_law_encode, mu_law_table

MODES = ("classifier", "regressor", "slice", "vocoder", "tokens")
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
          signals shorter than a slice are padded with silence. With `labels`, `x` is
          `{"waveform": slices, "class_id": (batch, 1) int32}` (a class-conditional GAN).
        - `"vocoder"` (GAN vocoder; needs `features`): `x` = the padded log-mel rows of a window, `(batch,
          mel_frames, n_mels)`; `y` = its `frame_size` samples as float32, `(batch, frame_size, 1)`, the targets of
          the regressor's window (the first one a multiple of `hop`).
        - `"tokens"` (token language model; `signals` are int token sequences, `data.tokens`): `x` = window[:-1],
          `y` = window[1:], both int32 `(batch, frame_size)`.

    Conditioning (WaveNet modes only): with `labels` and/or `features`, `x` is a dict keyed by the model's input
    names, `{"waveform": x, "class_id": (batch, 1) int32, "mel": (batch, mel_frames, n_mels) float32}` (only the
    keys given). `features` are padded log-mels (`data.features.pad_features`), one per signal, computed once by
    the caller and only sliced per batch (the generator keeps the caller's arrays, no copy). Window starts are then
    restricted so that the first target (start + 1 within its signal) is a multiple of `hop`, and the mel rows are
    the padded rows from `(start + 1) // hop` on, `mel_frames = (frame_size - 1) // hop + 1 + 2 * CONTEXT_FRAMES`
    of them: so target sample `n` of the window (absolute `start + 1 + n`) has its own frame `(start + 1 + n) // hop`
    at row `n // hop + CONTEXT_FRAMES` of the slice, as the model's alignment rule asks. Such a signal must hold
    `frame_size + hop` samples (shorter ones are left out, with their labels and features).

    Args:
        signals: list of 1-D float arrays in [-1, 1] (mode "tokens": 1-D int token sequences).
        frame_size: samples the model sees per window.
        batch_size: windows per batch.
        steps_per_epoch: batches per epoch.
        epochs: epochs the stream spans.
        mode: one of `MODES`.
        seed: integer seed.
        reshuffle: draw new windows every epoch.
        quantization_channels: mu-law classes.
        labels: optional class id (int) of each signal, returned as `x["class_id"]`.
        features: optional padded log-mel `(rows, n_mels)` of each signal, returned as `x["mel"]`.
        hop: samples per feature frame (needed with `features`).
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
                 reshuffle=True, quantization_channels=QUANTIZATION_CHANNELS, epochs=1, labels=None, features=None,
                 hop=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        for name, value in (("frame_size", frame_size), ("batch_size", batch_size),
                            ("steps_per_epoch", steps_per_epoch)):
            if int(value) <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if mode == "slice" and features is not None:
            raise ValueError("features condition a WaveNet or a vocoder; slice mode takes none")
        if mode == "vocoder" and (features is None or labels is not None):
            raise ValueError("vocoder mode takes features (padded log-mels) and no labels")
        if mode == "tokens" and (features is not None or labels is not None):
            raise ValueError("tokens mode takes token sequences only, no labels or features")
        for name, given in (("labels", labels), ("features", features)):
            if given is not None and len(given) != len(signals):
                raise ValueError(f"{name} must have one entry per signal ({len(signals)}), got {len(given)}")
        if features is not None and (hop is None or int(hop) <= 0):
            raise ValueError(f"features need a positive hop (samples per frame), got {hop}")
        self.frame_size = int(frame_size)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = int(steps_per_epoch)
        self.mode = mode
        self.seed = int(seed)
        self.reshuffle = bool(reshuffle)
        self.quantization_channels = int(quantization_channels)
        self.epochs = int(epochs)
        self.position = 0
        # With features, window starts step by the hop: `hop` starts to one usable one.
        self.hop = int(hop) if features is not None else 1

        # A WaveNet window holds one more sample than the model sees: the last target.
        self.window = self.frame_size + (0 if mode == "slice" else 1)
        if mode == "slice":
            # Clips shorter than a slice are padded so they can still be drawn whole.
            signals = [np.pad(s, (0, max(0, self.window - len(s)))) for s in signals]
        # The shortest usable signal: one window whose first target is a multiple of the hop (start hop - 1).
        shortest = self.window + self.hop - 1
        keep = [i for i, s in enumerate(signals) if len(s) >= shortest]
        signals = [np.asarray(signals[i], dtype=np.int32 if mode == "tokens" else np.float32) for i in keep]
        if not signals:
            raise ValueError(f"no signal is at least {shortest} samples long")
        self.labels = None if labels is None else np.array([int(labels[i]) for i in keep], np.int32)
        self.features, self.mel_frames = None, None
        if features is not None:
            self.features = [np.asarray(features[i], dtype=np.float32) for i in keep]  # no copy of float32 arrays
            self.mel_frames = (self.frame_size - 1) // self.hop + 1 + 2 * CONTEXT_FRAMES
            bins = {f.shape[-1] if f.ndim == 2 else None for f in self.features}
            if len(bins) != 1 or None in bins:
                raise ValueError(f"features must be (rows, n_mels) arrays with one n_mels, got shapes "
                                 f"{sorted({f.shape for f in self.features})}")
            self.n_mels = bins.pop()
            for signal, feature in zip(signals, self.features):
                # The last window's slice ends at padded row (len - 1) // hop + 2 * CONTEXT_FRAMES at most.
                needed = (len(signal) - 1) // self.hop + 1 + 2 * CONTEXT_FRAMES
                if len(feature) < needed:
                    raise ValueError(f"features of a {len(signal)}-sample signal need at least {needed} padded "
                                     f"rows (pad_features of log_mel), got {len(feature)}")
        # One signal is used as it is; several are joined once. Windows are only ever gathered per batch.
        self.audio = signals[0] if len(signals) == 1 else np.concatenate(signals)
        self.codes = None
        if mode in ("classifier", "regressor"):
            self.codes = np.empty(len(self.audio), np.uint8)
            for start in range(0, len(self.audio), ENCODE_BLOCK):  # blocks: temporaries stay small
                block = self.audio[start:start + ENCODE_BLOCK]
                self.codes[start:start + len(block)] = mu_law_encode(block, self.quantization_channels)
            self.table = mu_law_table(self.quantization_channels)
        lengths = np.array([len(s) for s in signals], dtype=np.int64)
        self.file_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        # Number of valid window starts per signal, and their running total, to draw uniformly over all of them.
        # With features, start k of a signal is k * hop + hop - 1 (its first target is (k + 1) * hop).
        self.starts_per_signal = (lengths - self.window + 1) // self.hop
        self.cumulative_starts = np.cumsum(self.starts_per_signal)

    @property
    def conditioned(self):
        return self.labels is not None or self.features is not None

    def __len__(self):
        if not self.reshuffle:
            return self.steps_per_epoch
        return max(1, self.steps_per_epoch * self.epochs - self.position)

    def draw(self, index):
        """`(signal, start)` of each window of batch `index`: the signal it comes from and its start within it."""
        step = int(index) + (self.position if self.reshuffle else 0)
        rng = np.random.default_rng([self.seed, step])
        draws = rng.integers(0, self.cumulative_starts[-1], size=self.batch_size)
        signal = np.searchsorted(self.cumulative_starts, draws, side="right")
        offset = draws - (self.cumulative_starts[signal] - self.starts_per_signal[signal])
        return signal, offset * self.hop + (self.hop - 1)

    def window_starts(self, index):
        """The start offsets (into the joined audio) of the windows of batch `index`."""
        signal, start = self.draw(index)
        return self.file_starts[signal] + start

    def __getitem__(self, index):
        if index >= len(self):
            raise IndexError(index)
        signal, start = self.draw(index)
        rows = (self.file_starts[signal] + start)[:, None] + np.arange(self.window)[None, :]
        if self.mode == "slice":
            if self.labels is None:
                return (self.audio[rows][..., None],)
            return ({"waveform": self.audio[rows][..., None], "class_id": self.labels[signal][:, None]},)
        if self.mode == "vocoder":
            return self._mel_rows(signal, start), self.audio[rows[:, 1:]][..., None]
        if self.mode == "tokens":
            return self.audio[rows[:, :-1]], self.audio[rows[:, 1:]]
        codes = self.codes[rows]
        x = self.table[codes[:, :-1]][..., None]
        y = codes[:, 1:].astype(np.int32) if self.mode == "classifier" else self.audio[rows[:, 1:]][..., None]
        if not self.conditioned:
            return x, y
        inputs = {"waveform": x}
        if self.labels is not None:
            inputs["class_id"] = self.labels[signal][:, None]
        if self.features is not None:
            inputs["mel"] = self._mel_rows(signal, start)
        return inputs, y

    def _mel_rows(self, signal, start):
        """The padded log-mel rows of windows `(signal, start)`: `mel_frames` rows from the one `CONTEXT_FRAMES`
        before the first target's frame."""
        first = (start + 1) // self.hop
        return np.stack([self.features[s][f:f + self.mel_frames] for s, f in zip(signal, first)])

    def as_dataset(self, prefetch=2, replicas=None):
        """The same batches as a `tf.data.Dataset`, prefetched by one thread with autotuning off.

        On a 2-core machine tf.data's autotuning threads (what Keras gives a `PyDataset`) compete with the
        training step for the cores and now and then cost a quarter of its speed; one prefetch thread does not.
        The dataset reads `position` when it is iterated, so set that first.

        Args:
            prefetch: batches prepared ahead.
            replicas: for one input pipeline of a `tf.distribute` strategy, `(served, count, groups)`: the
                indices of the replicas it feeds, the replicas in all, and the equal parts of a batch that each
                replica takes its share of (`replica_rows`). Each global batch then becomes one element per served
                replica, in order, each holding that replica's rows.
        """
        import tensorflow as tf

        frame = self.frame_size
        x = tf.TensorSpec((None, frame, 1), tf.float32)
        if self.conditioned:
            x = {"waveform": x}
            if self.labels is not None:
                x["class_id"] = tf.TensorSpec((None, 1), tf.int32)
            if self.features is not None:
                x["mel"] = tf.TensorSpec((None, self.mel_frames, self.n_mels), tf.float32)
        if self.mode == "vocoder":
            signature = (tf.TensorSpec((None, self.mel_frames, self.n_mels), tf.float32),
                         tf.TensorSpec((None, frame, 1), tf.float32))
        elif self.mode == "tokens":
            signature = (tf.TensorSpec((None, frame), tf.int32),) * 2
        elif self.mode == "slice":
            signature = (x,)
        elif self.mode == "classifier":
            signature = (x, tf.TensorSpec((None, frame), tf.int32))
        else:
            signature = (x, tf.TensorSpec((None, frame, 1), tf.float32))

        served, count, groups = replicas if replicas is not None else ((0,), 1, 1)
        shares = [replica_rows(self.batch_size, replica, count, groups) for replica in served]

        def batches():
            for index in range(len(self)):
                batch = self[index]
                if count == 1:
                    yield batch
                    continue
                for rows in shares:
                    yield keras.tree.map_structure(lambda array: array[rows], batch)

        options = tf.data.Options()
        options.autotune.enabled = False
        options.threading.private_threadpool_size = 1
        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        # Keras then knows its end.
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(self) * len(served)))
        if replicas is not None and not self.reshuffle:
            # Keras cannot count a distributed dataset's batches, so it would not start validation's over each
            # epoch; repeated, the same batches come round in the same order.
            dataset = dataset.repeat()
        return dataset.with_options(options).prefetch(prefetch)


def replica_rows(batch_size, replica, replicas, groups=1):
    """The rows of a global batch of `batch_size` that replica `replica` of `replicas` trains on.

    The batch is `groups` equal parts (a GAN step's critic batches, one after another); each replica takes the same
    contiguous share of every part, so replica 0 of 2 gets the first half of each. Together the replicas cover the
    batch once, in the order one replica would see it.

    Example:

    >>> replica_rows(8, 1, 2, groups=2)
    array([2, 3, 6, 7])
    """
    part = batch_size // groups
    share = part // replicas
    if part * groups != batch_size or share * replicas != part:
        raise ValueError(f"a batch of {batch_size} in {groups} parts cannot be shared by {replicas} replicas")
    return (np.arange(groups)[:, None] * part + replica * share + np.arange(share)[None, :]).ravel()



def frame_conditioning(corpus, labelled, mel):
    """The conditioning arguments of a `FrameGenerator` over `corpus` (a `data.audio.AudioCorpus`): its labels when
    `labelled`, and with `mel` (a `MelSettings`) the padded log-mel of each signal (`log_mel` then `pad_features`,
    computed once here) with the hop."""
    from data.features import log_mel, pad_features

    given = {"labels": corpus.labels} if labelled else {}
    if mel:
        given.update(features=[pad_features(log_mel(signal, mel), mel) for signal in corpus.signals],
                     hop=mel.hop_length)
    return given
