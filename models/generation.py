"""Sample-by-sample generation from a WaveNet, with cached per-layer state (the fast-WaveNet queues).

A dilated causal convolution with dilation `d` needs, at step `t`, its input at `t`, `t - d`, ...: each layer
keeps its last `(kernel_size - 1) * d` inputs in a ring buffer, so one step costs one matrix product per
layer instead of a forward pass over the whole receptive field. The weights are packed once from the Keras
model, found through its `WaveNetSpec`, and a loop advances all streams together, many steps per call.

Two engines run that loop on the same packed weights and give the same audio:
- `"numba"`: the compiled kernel (`models.kernels`), tens of thousands of steps per second;
- `"numpy"`: the portable path (`models.fallback`), NumPy with BLAS products, a few thousand.
`engine="auto"` (the default; the environment variable `WAVEGEN_ENGINE` changes the default) takes the compiled
kernel, and falls back to NumPy with a warning when numba is missing or the kernel cannot be built.

Buffers that hold no history yet hold zeros, exactly what a causal convolution pads with, so the result is
what the full model gives on the whole history (`generate_naive`, used by the tests and the benchmark).
"""

import math
import os
import warnings
import weakref
from typing import NamedTuple

import numpy as np

from data.features import CONTEXT_FRAMES, check_mel, pad_features, samples_for_frames
from data.mulaw import mu_law_bin_edges, mu_law_round_trip, mu_law_table
from models import fallback
from models.gan_vocoder import is_gan_vocoder, vocoder_request
from models.layers import class_ids, gate_halves  # noqa: F401  (class_ids: also models.generation's)
from models.precision import PRECISIONS, bfloat16_values, to_bfloat16
from models.sampling import DISTRIBUTION_CODES, DRAWS_PER_STEP, sample
from models.wavenet import wavenet_spec

ENGINES = ("auto", "numba", "numpy")
ENGINE_VARIABLE = "WAVEGEN_ENGINE"
# Every packed width is a multiple of this: the widest vector of the compiled products (`models.gemm.LANES`,
# 8 or 16 floats) divides it.
COLUMN_MULTIPLE = 16
# Up to this many streams the spectrogram's projection into the gates is one product per block of steps, before
# the loop (`project`, on the loop's own thread): reading a few precomputed rows per step costs less than reading
# the projection weights of every layer at every step, which is what the loop does with many streams (where the
# weights are shared).
PROJECTED_STREAMS = 4
PROJECTED_BLOCK = 1024  # steps per precomputed block


class PackedWeights(NamedTuple):
    """A WaveNet's weights as the generation loop reads them; every width padded to `COLUMN_MULTIPLE`.

    Zero weights and biases keep the padding at zero all the way through (tanh(0) * sigmoid(0) = 0, ReLU(0) = 0),
    so the padded network computes exactly what the model does.
    """

    in_w: np.ndarray  # (input taps, residual): the input convolution, oldest tap first (zero for an embedded input)
    in_b: np.ndarray  # (residual,)
    in_table: np.ndarray  # (codes, residual): an embedded input's vector per mu-law code; (0, residual) for none
    gate_w: np.ndarray  # (layers, taps * residual, 2 * residual): the taps stacked, oldest first; filters | gates
    gate_b: np.ndarray  # (layers, 2 * residual)
    out_w: np.ndarray  # (layers, residual, skip + residual): skip and residual 1x1s side by side
    out_b: np.ndarray  # (layers, skip + residual)
    dilations: np.ndarray  # (layers,) int64
    queue_offsets: np.ndarray  # (layers,) int64: where each layer's ring buffer starts
    queue_lengths: np.ndarray  # (layers,) int64: (taps - 1) * dilation
    post_w: np.ndarray  # (skip, post)
    post_b: np.ndarray  # (post,)
    logit_w: np.ndarray  # (post, outputs)
    logit_b: np.ndarray  # (outputs,)
    edges: np.ndarray  # mu-law bin edges (float32), to code the fed-back sample
    table: np.ndarray  # mu-law decoding table (float64)
    num_outputs: int  # the model's true number of outputs (before padding)
    distribution: int  # models.sampling.CATEGORICAL, LOGISTIC_MIXTURE or POINT
    mixtures: int
    # Conditioning, projected into the gates (same padded layout as gate_b); empty when the model has none.
    class_table: np.ndarray  # (classes, layers, 2 * residual): each class's vector through each layer's projection
    mel_w: np.ndarray  # (layers, mel channels, 2 * residual): the upsampled spectrogram's projection into each gate


class StreamState(NamedTuple):
    """The queues of a batch of streams, updated in place by the generation loop, and the conditioning of the
    steps of the current call."""

    in_queue: np.ndarray  # (streams, input taps - 1): the input convolution's past inputs, oldest first
    queues: np.ndarray  # (slots, streams, residual), time-major: one slot holds a row per stream
    # Conditioning, added to each gate before the activation; no rows when the model has none of the kind.
    class_rows: np.ndarray  # (layers, streams, 2 * residual): each stream's class projected into each layer
    upsampled: np.ndarray  # (steps, streams, mel channels): the upsampled spectrogram of this call's steps
    gate_rows: np.ndarray  # (streams, steps, layers, 2 * residual): the same already projected (few streams)


def _padded(size, multiple=COLUMN_MULTIPLE):
    return -(-size // multiple) * multiple


def _place(shape, *parts):
    """A float32 array of zeros of `shape` with each `(values, corner)` part copied in at its corner."""
    out = np.zeros(shape, np.float32)
    for values, corner in parts:
        out[tuple(slice(start, start + size) for start, size in zip(corner, values.shape))] = values
    return out


def pack_weights(model, spec=None):
    """Packs a WaveNet's weights for the generation loop, finding each layer by the name its spec gives it.

    Args:
        model: a model made by `models.build_wavenet` (built or loaded).
        spec: its `WaveNetSpec`; read off the model when not given.

    Returns:
        `PackedWeights`.
    """
    spec = spec or wavenet_spec(model)

    def weights(name):
        kernel, bias = model.get_layer(name).get_weights()
        return np.asarray(kernel, np.float32), np.asarray(bias, np.float32)

    def matrix(name):
        """A 1x1 layer's kernel as `(inputs, outputs)`."""
        kernel, bias = weights(name)
        return kernel.reshape(-1, kernel.shape[-1]), bias

    residual, skip, taps = spec.residual_channels, spec.skip_channels, spec.kernel_size
    post_kernel, post_bias = matrix(spec.POST)
    logit_kernel, logit_bias = matrix(spec.LOGITS)
    r, s, p, c = (_padded(n) for n in (residual, skip, post_kernel.shape[1], logit_kernel.shape[1]))
    filters, gates = gate_halves(residual)
    padded_filters, padded_gates = gate_halves(r)
    if spec.input_embedding:  # h = table[code of x]: no convolution (zero weights, one tap)
        table = np.asarray(model.get_layer(spec.INPUT_EMBEDDING).get_weights()[0], np.float32)
        in_kernel, in_bias = np.zeros((1, 1, residual), np.float32), np.zeros(residual, np.float32)
    else:
        table = np.zeros((0, residual), np.float32)
        in_kernel, in_bias = weights(spec.INPUT_CONV)
    gate_w, gate_b, out_w, out_b = [], [], [], []
    for block in spec.blocks:
        kernel, bias = weights(block.name("dilated"))  # (taps, residual, 2 * residual), tap 0 the oldest
        gate_w.append(_place((taps * r, 2 * r), *[
            (kernel[tap, :, half], (tap * r, padded.start))
            for tap in range(taps) for half, padded in ((filters, padded_filters), (gates, padded_gates))]))
        gate_b.append(_place((2 * r,), (bias[filters], (padded_filters.start,)),
                             (bias[gates], (padded_gates.start,))))
        # Skip and residual 1x1s as one product into the per-stream state [skip sum | residual path].
        skip_kernel, skip_bias = matrix(block.name("skip"))
        parts_w, parts_b = [(skip_kernel, (0, 0))], [(skip_bias, (0,))]
        if block.has_residual:
            residual_kernel, residual_bias = matrix(block.name("residual"))
            parts_w.append((residual_kernel, (0, s)))
            parts_b.append((residual_bias, (s,)))
        out_w.append(_place((r, s + r), *parts_w))
        out_b.append(_place((s + r,), *parts_b))
    def gate_columns(kernel):
        """A `(inputs, 2 * residual)` projection into a gate, in the padded gate layout."""
        return _place((kernel.shape[0], 2 * r), (kernel[:, filters], (0, padded_filters.start)),
                      (kernel[:, gates], (0, padded_gates.start)))

    class_table = np.zeros((len(spec.class_names), len(spec.blocks), 2 * r), np.float32)
    if spec.class_names:
        vectors = np.asarray(model.get_layer(spec.CLASS_EMBEDDING).get_weights()[0], np.float32)
        for index, block in enumerate(spec.blocks):
            class_table[:, index] = vectors @ gate_columns(model.get_layer(block.name("class")).get_weights()[0])
    mel_w = np.zeros((len(spec.blocks), spec.mel_channels if spec.mel else 0, 2 * r), np.float32)
    if spec.mel is not None:
        mel_w = np.stack([gate_columns(model.get_layer(block.name("mel")).get_weights()[0])
                          for block in spec.blocks])
    dilations = np.array(spec.dilations, np.int64)
    lengths = (taps - 1) * dilations
    return PackedWeights(
        in_w=_place((in_kernel.shape[0], r), (in_kernel[:, 0, :], (0, 0))), in_b=_place((r,), (in_bias, (0,))),
        in_table=_place((table.shape[0], r), (table, (0, 0))),
        gate_w=np.stack(gate_w), gate_b=np.stack(gate_b), out_w=np.stack(out_w), out_b=np.stack(out_b),
        dilations=dilations, queue_offsets=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
        queue_lengths=lengths,
        post_w=_place((s, p), (post_kernel, (0, 0))), post_b=_place((p,), (post_bias, (0,))),
        logit_w=_place((p, c), (logit_kernel, (0, 0))), logit_b=_place((c,), (logit_bias, (0,))),
        edges=mu_law_bin_edges(spec.num_classes), table=mu_law_table(spec.num_classes).astype(np.float64),
        num_outputs=int(logit_kernel.shape[1]), distribution=DISTRIBUTION_CODES[spec.distribution],
        mixtures=int(spec.num_mixtures), class_table=class_table, mel_w=np.ascontiguousarray(mel_w))


# The matrices that hold nearly all of a WaveNet's weights: the ones `precision="bfloat16"` stores as bfloat16.
_REDUCED = ("gate_w", "out_w", "post_w", "logit_w")


def reduce_precision(weights, precision, as_bits=True):
    """`weights` with the big matrices rounded to `precision`: for `"bfloat16"`, bfloat16 bit patterns (uint16,
    which the compiled products widen to float32 as they load them: half the bytes to read per step) or, with
    `as_bits=False`, the same rounded values in float32 (for the NumPy engine, which computes the same products).
    Biases, conditioning projections and the input convolution stay float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return weights
    rounding = to_bfloat16 if as_bits else bfloat16_values
    return weights._replace(**{name: rounding(getattr(weights, name)) for name in _REDUCED})


def reduced_model(model, precision):
    """`model`, or for `"bfloat16"` a copy whose weight matrices (the kernels `reduce_precision` rounds) hold the
    rounded values: what reduced-precision generation computes, as a Keras model (for the prime, and to score)."""
    if precision == "float32":
        return model
    import keras

    spec = wavenet_spec(model)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    names = [spec.POST, spec.LOGITS] + [block.name(part) for block in spec.blocks for part in ("dilated", "skip")]
    names += [block.name("residual") for block in spec.blocks if block.has_residual]
    for name in names:
        kernel, bias = copy.get_layer(name).get_weights()
        copy.get_layer(name).set_weights([bfloat16_values(kernel), bias])
    return copy


def _empty_state(weights, num_streams):
    layers, _, gate_channels = weights.gate_w.shape
    return StreamState(in_queue=np.zeros((num_streams, weights.in_w.shape[0] - 1), np.float32),
                       queues=np.zeros((int(weights.queue_lengths.sum()), num_streams, weights.in_w.shape[1]),
                                       np.float32),
                       class_rows=np.zeros((0, num_streams, gate_channels), np.float32),
                       upsampled=np.zeros((0, num_streams, weights.mel_w.shape[1]), np.float32),
                       gate_rows=np.zeros((0, 0, weights.gate_w.shape[0], weights.gate_w.shape[2]), np.float32))


def _compiled_run(weights, split_cores):
    """The compiled kernel's runner for `weights` (`models.kernels.Runner`), tried on one step of a throwaway
    stream the first time; raises if it cannot be built."""
    from models import kernels  # imports numba

    runner = kernels.Runner(weights, split_cores)
    if _COMPILED_STATUS != BUILT:
        state = _empty_state(weights, 1)
        kernels.run(weights, state, 0, np.zeros(1, np.float32), np.full((1, 1, DRAWS_PER_STEP), 0.5),
                    1.0, np.empty((1, 1), np.float32), np.empty(1, np.float32))
    return runner


# None until the compiled kernel has been tried; then BUILT, or why it could not be used. Every model packs into
# arrays of the same types, so one successful try covers them all.
BUILT = "built"
_COMPILED_STATUS = None


def engine_name(engine):
    """The engine asked for: `engine`, else `$WAVEGEN_ENGINE`, else auto; one of `ENGINES`, or `ValueError`."""
    engine = engine or os.environ.get(ENGINE_VARIABLE, "auto") or "auto"
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r} (check ${ENGINE_VARIABLE})")
    return engine


def _engine_run(engine, weights, split_cores=None):
    """`(name, run function)` of the engine asked for."""
    global _COMPILED_STATUS
    engine = engine_name(engine)
    if engine == "numpy":
        return "numpy", fallback.run
    if _COMPILED_STATUS == BUILT:
        return "numba", _compiled_run(weights, split_cores)
    if engine == "numba" or _COMPILED_STATUS is None:
        try:
            run = _compiled_run(weights, split_cores)
            _COMPILED_STATUS = BUILT
            return "numba", run
        except Exception as error:  # numba missing, or LLVM cannot build the kernel for this CPU
            if engine == "numba":
                raise
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            _COMPILED_STATUS = f"{type(error).__name__}: {first_line}"
            warnings.warn(f"compiled generation kernel unavailable ({_COMPILED_STATUS}); using the NumPy "
                          f"fallback (set {ENGINE_VARIABLE}=numpy to choose it without this warning)",
                          RuntimeWarning, stacklevel=3)
    return "numpy", fallback.run


def _compiled_project():
    from models import kernels

    return kernels.project


def _as_audio(prime, name="prime"):
    """`prime` as float32 samples in [-1, 1]: integer PCM is scaled by its full scale (int16 32768 -> 1.0), and
    `(streams, time, 1)` loses its channel axis."""
    array = np.asarray(prime)
    if array.dtype.kind == "i":  # signed PCM: full scale is 2^(bits - 1)
        array = array / float(np.iinfo(array.dtype).max + 1)
    elif array.dtype.kind == "u":  # unsigned PCM (8-bit WAV): silence is the middle code
        half = (np.iinfo(array.dtype).max + 1) / 2.0
        array = (array - half) / half
    elif array.dtype.kind != "f":
        raise ValueError(f"{name} must hold audio samples (floats in [-1, 1] or integer PCM), got dtype {array.dtype}")
    array = np.asarray(array, np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or Inf samples")
    return array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array


def resolve_conditioning(spec, num_streams, classes, mel, prime=None):
    """Checks a request's conditioning against the model's: `(class id per stream, padded spectrogram per stream)`,
    each `None` where the model takes none.

    Raises:
        ValueError: conditioning the model does not take or lacks, unknown classes, the wrong number of them, a
            spectrogram that does not fit (`data.features.FeatureError`), or a prime with a spectrogram.
    """
    ids = padded = None
    if spec.class_names:
        if classes is None:
            raise ValueError(f"this model is conditioned on a class: give one per stream "
                             f"(its classes: {', '.join(spec.class_names)})")
        ids = class_ids(spec, classes)
        if len(ids) not in (1, num_streams):
            raise ValueError(f"give one class per stream ({num_streams}) or one for all, got {len(ids)}")
        ids = np.broadcast_to(ids, (num_streams,)).astype(np.int32)
    elif classes is not None:
        class_ids(spec, classes)  # raises: the model has no classes
    if spec.mel is not None:
        if mel is None:
            raise ValueError(f"this model is a vocoder conditioned on log-mel spectrograms ({spec.mel.describe()}): "
                             "give one")
        if prime is not None:
            raise ValueError("a prime cannot be combined with a spectrogram: the spectrogram sets the whole output")
        mel = check_mel(mel, spec.mel)
        if mel.ndim == 2:
            mel = np.broadcast_to(mel, (num_streams, *mel.shape))
        if mel.shape[0] != num_streams:
            raise ValueError(f"give one spectrogram for all streams or one per stream ({num_streams}), "
                             f"got {mel.shape[0]}")
        padded = pad_features(mel, spec.mel)
    else:
        _refuse_spectrogram(spec, mel)
    return ids, padded


def _refuse_spectrogram(spec, mel):
    """Raises `ValueError` when a spectrogram is given to a model not trained on spectrograms."""
    if mel is not None and spec.mel is None:
        raise ValueError("this model was not trained on spectrograms; generate without one")


class IncrementalWaveNet:
    """A WaveNet's weights packed for the generation loop, and the queues of a batch of streams.

    A conditioned model takes its conditioning in `reset`: one class per stream (projected into every layer once,
    at reset), and a log-mel spectrogram, upsampled by the model's own upsampler once per `advance` call; the
    generation loop projects each step's upsampled row into each gate.

    Args:
        model: a model made by `models.build_wavenet` (built or loaded).
        engine: `"auto"` (compiled kernel, NumPy when it cannot be built), `"numba"` or `"numpy"`;
            `None` reads `$WAVEGEN_ENGINE` (default `"auto"`).
        split_cores: the compiled kernel's use of the cores: how many share each step's products
            (`models.kernels.Runner`); `None` chooses by the number of streams. The audio is the same either way.
        precision: `"float32"` (exact), or `"bfloat16"`: the weight matrices rounded to bfloat16 and stored so
            (`reduce_precision`), the arithmetic still float32; on any CPU. What it costs in bits per sample is in
            the README's generation section.

    Example:

    >>> net = IncrementalWaveNet(model)
    >>> x = net.reset(num_streams=4, prime=None)
    >>> output, x = net.advance(x, steps=100, uniforms=np.random.default_rng(0).random((100, 4, 2)))
    """

    def __init__(self, model, engine=None, split_cores=None, precision="float32"):
        self.model = model
        self.spec = wavenet_spec(model)
        self.precision = precision
        packed = pack_weights(model, self.spec)
        self.weights = reduce_precision(packed, precision)
        self.engine, self._run = _engine_run(engine, self.weights, split_cores)
        if self.engine == "numpy":  # NumPy multiplies float32: the same rounded values
            self.weights = reduce_precision(packed, precision, as_bits=False)
        self._project = fallback.project if self.engine == "numpy" else _compiled_project()
        # (mel channels, layers * gate channels): each layer's projection of the spectrogram, side by side
        layers, channels, gate_channels = self.weights.mel_w.shape
        self.mel_w_flat = np.ascontiguousarray(self.weights.mel_w.transpose(1, 0, 2).reshape(
            channels, layers * gate_channels))
        self.feature_model = None
        self.upsampler = None
        self.state = None
        self.num_streams = 0
        self.time = 0
        self.mel = None  # (streams, padded frames, n_mels) for a mel-conditioned model
        self.generated = 0

    @property
    def mel_samples(self):
        """Samples the spectrogram given to `reset` conditions; `None` for a model without one."""
        if self.mel is None:
            return None
        return samples_for_frames(self.mel.shape[1] - 2 * CONTEXT_FRAMES - 1, self.spec.mel)

    def _history_model(self):
        """A model that returns the input of every convolution with memory, for warming the queues."""
        if self.feature_model is None:
            import keras

            model = reduced_model(self.model, self.precision)  # the queues hold what the rounded model computes
            layers = [model.get_layer(self.spec.AUDIO)] + [
                model.get_layer(block.name("dilated")) for block in self.spec.blocks]
            outputs = [layers[0].output] + [layer.input for layer in layers[1:]]
            self.feature_model = keras.Model(model.inputs, outputs, name="history")
        return self.feature_model

    def _upsampler(self):
        """The model's spectrogram path, from its `mel` input to one row per sample (before the crop)."""
        if self.upsampler is None:
            import keras

            mel_input = self.model.get_layer(self.spec.MEL_FEATURES).input
            self.upsampler = keras.Model(mel_input, self.model.get_layer(self.spec.MEL_UPSAMPLE).output,
                                         name="upsampler")
        return self.upsampler

    def reset(self, num_streams, prime=None, classes=None, mel=None):
        """Empties the queues of `num_streams` streams, then fills them from `prime` in one forward pass.

        Args:
            num_streams: streams to generate.
            prime: `None`, a 1-D signal shared by all streams, or one row per stream, `(num_streams, time)` or
                `(num_streams, time, 1)`; floats in [-1, 1] (louder samples are clipped) or integer PCM (scaled
                by its full scale), mu-law round-tripped as in training. All but its last sample fill the queues.
            classes: a class-conditioned model's class per stream: names or ids, one per stream (or one for all).
            mel: a mel-conditioned model's log-mel spectrogram (`data.features.log_mel`), `(frames, n_mels)` for
                every stream or `(num_streams, frames, n_mels)`; it conditions the next `(frames - 1) * hop`
                samples. It cannot be combined with a prime.

        Returns:
            `(num_streams,)` float32: the input of the first step (the prime's last sample, or silence).

        Raises:
            ValueError: conditioning the model does not take or lacks, unknown classes, a spectrogram that does
                not fit the model's settings (`data.features.FeatureError`), a prime with a spectrogram.
        """
        self.num_streams = int(num_streams)
        self.time = 0
        self.generated = 0
        w = self.weights
        self.state = _empty_state(w, self.num_streams)
        self._condition(classes, mel, prime)
        if prime is None:
            return np.full(num_streams, mu_law_round_trip(np.zeros(1))[0], np.float32)
        prime = _as_audio(prime)
        if prime.ndim == 1:
            prime = np.broadcast_to(prime, (num_streams, prime.shape[-1]))
        if prime.ndim != 2 or prime.shape[0] != num_streams or prime.shape[1] < 1:
            raise ValueError(f"prime must be 1-D (time,), ({num_streams}, time) or ({num_streams}, time, 1) with "
                             f"at least one sample, got shape {np.shape(prime)}")
        prime = mu_law_round_trip(prime)
        history = prime[:, :-1]
        if history.shape[1] > 0:
            self.time = history.shape[1]
            k_in = w.in_w.shape[0]
            # The queues hold the last `queue length` inputs of each layer, and each of those depends on at most
            # a receptive field of samples before it: run the model on just that much of a long prime.
            keep = max(k_in - 1, int(w.queue_lengths.max())) + self.spec.receptive_field
            window = history[:, -min(history.shape[1], keep):]
            inputs = {self.spec.WAVEFORM: window[..., None]}
            if self.spec.class_names:
                inputs[self.spec.CLASS_ID] = self.class_ids[:, None]
            features = self._history_model().predict(inputs, verbose=0, batch_size=max(1, min(num_streams, 64)))
            audio, features = features[0][..., 0], features[1:]
            if k_in > 1:  # the input queue is kept in time order, oldest first
                count = min(k_in - 1, audio.shape[1])
                self.state.in_queue[:, k_in - 1 - count:] = audio[:, audio.shape[1] - count:]
            for offset, length, feature in zip(w.queue_offsets, w.queue_lengths, features):
                # Ring slot of time tau is `offset + tau % length`; fill the last `length` times before now.
                count = min(length, feature.shape[1])
                times = np.arange(self.time - count, self.time)
                self.state.queues[offset + times % length, :, :self.spec.residual_channels] = \
                    feature[:, feature.shape[1] - count:].transpose(1, 0, 2)
        return prime[:, -1].copy()

    def _condition(self, classes, mel, prime):
        """Checks and stores the conditioning given to `reset`."""
        self.class_ids, self.mel = resolve_conditioning(self.spec, self.num_streams, classes, mel, prime)
        if self.class_ids is not None:
            # Each stream's class through every layer's projection: computed once, added at every step.
            self.state = self.state._replace(class_rows=np.ascontiguousarray(
                self.weights.class_table[self.class_ids].transpose(1, 0, 2)))

    def _upsampled(self, steps):
        """`(streams, steps, mel channels)`: the upsampler's rows for the next `steps` samples."""
        hop = self.spec.mel.hop_length
        first, last = self.generated, self.generated + steps - 1
        # Padded row `k` holds frame `k - CONTEXT_FRAMES`; sample `n` reads frames n // hop +- CONTEXT_FRAMES.
        rows = self.mel[:, first // hop: last // hop + 1 + 2 * CONTEXT_FRAMES]
        upsampled = np.asarray(self._upsampler()(rows, training=False), np.float32)
        start = CONTEXT_FRAMES * hop + first - (first // hop) * hop
        return upsampled[:, start:start + steps]

    def advance(self, x, steps, uniforms, temperature=1.0):
        """Runs `steps` steps of every stream from inputs `x`.

        Args:
            x: `(num_streams,)` the input of the first step.
            steps: steps to run.
            uniforms: `(steps, num_streams, 2)` uniform [0, 1) numbers for sampling.
            temperature: sampling temperature.

        Returns:
            `(output, x)`: `(num_streams, steps)` float32 samples, and the input of the next step.
        """
        uniforms = np.ascontiguousarray(uniforms, np.float64)
        if uniforms.shape != (steps, self.num_streams, DRAWS_PER_STEP):
            raise ValueError(f"uniforms must have shape ({steps}, {self.num_streams}, {DRAWS_PER_STEP}), "
                             f"got {uniforms.shape}")
        output = np.empty((self.num_streams, steps), np.float32)
        fed = np.empty(self.num_streams, np.float32)
        if self.mel is None:
            self._run(self.weights, self.state, self.time, np.ascontiguousarray(x, np.float32), uniforms,
                      float(temperature), output, fed)
            self.time += steps
            self.generated += steps
            return output, fed
        if self.generated + steps > self.mel_samples:
            raise ValueError(f"the spectrogram conditions {self.mel_samples} samples; {self.generated} are done "
                             f"and {steps} more were asked for")
        upsampled = self._upsampled(steps)  # once per call: (streams, steps, channels)
        w = self.weights
        layers, channels, gate_channels = w.mel_w.shape
        projected = self.num_streams <= PROJECTED_STREAMS
        block = PROJECTED_BLOCK if projected else max(steps, 1)
        if not projected:  # time-major, so a block of streams reads contiguous rows at each step
            state = self.state._replace(upsampled=np.ascontiguousarray(upsampled.transpose(1, 0, 2)))
        x = np.ascontiguousarray(x, np.float32)
        for start in range(0, steps, block):
            stop = min(steps, start + block)
            if projected:
                rows = np.empty((self.num_streams, stop - start, layers, gate_channels), np.float32)
                self._project(np.ascontiguousarray(upsampled[:, start:stop]), self.mel_w_flat, rows)
                state = self.state._replace(gate_rows=rows)
            part = np.empty((self.num_streams, stop - start), np.float32)
            self._run(w, state, self.time, x, uniforms[start:stop], float(temperature), part, fed)
            output[:, start:stop] = part
            x = fed.copy()
            self.time += stop - start
        self.generated += steps
        return output, fed


def _check(num_samples, num_streams, temperature):
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 0:
        raise ValueError(f"num_samples must be a whole number >= 0, got {num_samples!r}")
    if isinstance(num_streams, bool) or int(num_streams) != num_streams or num_streams < 1:
        raise ValueError(f"num_streams must be a whole number >= 1, got {num_streams!r}")
    if not isinstance(temperature, (int, float, np.number)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")


def _request(spec, num_samples, num_streams, classes, mel):
    """`(num_samples, num_streams)` of a generation request, filled in from its conditioning where not given."""
    if num_streams is None:
        num_streams = 1
        if classes is not None and not isinstance(classes, (str, bytes)) and np.ndim(classes) == 1:
            num_streams = len(classes)
        if mel is not None and np.ndim(mel) == 3:
            num_streams = max(num_streams, np.shape(mel)[0])
    _refuse_spectrogram(spec, mel)
    if mel is not None:
        available = samples_for_frames(np.shape(mel)[-2], spec.mel)
        if num_samples is None:
            num_samples = available
        elif isinstance(num_samples, (int, np.integer)) and num_samples > available:
            raise ValueError(f"the spectrogram's {np.shape(mel)[-2]} frames condition {available} samples "
                             f"((frames - 1) x hop {spec.mel.hop_length}); {num_samples} were asked for")
    if num_samples is None:
        raise ValueError("num_samples is needed unless a spectrogram sets the length")
    return num_samples, num_streams


def generate_chunks(model, num_samples=None, *, num_streams=None, temperature=1.0, prime=None, seed=None,
                    chunk_size=4096, engine=None, classes=None, mel=None, precision="float32"):
    """Yields the generated audio in `(num_streams, <= chunk_size)` pieces, so long outputs need not fit in memory.

    Arguments as `generate`; `model` may also be an `IncrementalWaveNet`, or a GAN vocoder (whose pieces are its
    chunks, `models.gan_vocoder.vocode_chunks`).
    """
    if not isinstance(model, IncrementalWaveNet) and is_gan_vocoder(model):
        yield from vocoder_request(model, num_samples, num_streams, prime, classes, mel)
        return
    net = model if isinstance(model, IncrementalWaveNet) else IncrementalWaveNet(model, engine=engine,
                                                                                  precision=precision)
    num_samples, num_streams = _request(net.spec, num_samples, num_streams, classes, mel)
    _check(num_samples, num_streams, temperature)
    rng = np.random.default_rng(seed)
    x = net.reset(int(num_streams), prime, classes=classes, mel=mel)
    done = 0
    while done < num_samples:
        size = min(chunk_size, int(num_samples) - done)
        chunk, x = net.advance(x, size, rng.random((size, int(num_streams), DRAWS_PER_STEP)), temperature)
        done += size
        yield chunk


def generate(model, num_samples=None, *, num_streams=None, temperature=1.0, prime=None, seed=None, engine=None,
             classes=None, mel=None, precision="float32"):
    """Generates audio from a WaveNet, one sample at a time with cached state; or from a GAN vocoder's generator
    (`train_gan.py --condition mel`), which turns `mel` into audio in one parallel pass (`models.vocode`; it takes
    no prime or classes, and draws nothing at random, so `temperature`, `seed` and `engine` do not apply).

    Args:
        model: a WaveNet made by `models.build_wavenet`, or loaded from its `.keras` file; or a GAN vocoder.
        num_samples: samples to generate per stream; a spectrogram sets it when not given.
        num_streams: independent streams, advanced together in one batch; default: one per class given, one per
            spectrogram given, or 1.
        temperature: sampling temperature (finite, >= 0); 0 takes the argmax (classifier) or the most likely
            component's mode (regressor).
        prime: optional audio that the generation continues: 1-D, or one row per stream (see
            `IncrementalWaveNet.reset`); floats in [-1, 1], or integer PCM scaled by its full scale.
        seed: integer seed; the same seed gives the same audio, whichever engine runs.
        engine: `"auto"`, `"numba"` or `"numpy"` (see the module docstring); default `$WAVEGEN_ENGINE` or auto.
        classes: a class-conditioned model's classes, names or ids, one per stream (or one for all streams).
        mel: a mel-conditioned model's log-mel spectrogram (`data.features.log_mel` with the model's settings,
            `wavenet_spec(model).mel`): `(frames, n_mels)` for every stream or `(streams, frames, n_mels)`; the
            output has `(frames - 1) * hop` samples unless `num_samples` asks for fewer.
        precision: a WaveNet's weights in `"float32"` (exact) or `"bfloat16"` (see `IncrementalWaveNet`).

    Returns:
        `(num_streams, num_samples)` float32 in [-1, 1].

    Raises:
        ValueError: a negative or fractional length, a temperature that is negative or not finite, a prime of
            the wrong shape or holding NaN; conditioning that does not fit the model (unknown class, no class for
            a class-conditioned model, a spectrogram with the wrong bins or scale, a prime with a spectrogram).

    Example:

    >>> audio = models.generate(model, 8000, num_streams=2, temperature=0.9, seed=1)
    >>> audio.shape
    (2, 8000)
    >>> speech = models.generate(vocoder, mel=log_mel(recording, models.wavenet_spec(vocoder).mel), seed=0)
    """
    chunks = list(generate_chunks(model, num_samples, num_streams=num_streams, temperature=temperature,
                                  prime=prime, seed=seed, engine=engine, classes=classes, mel=mel,
                                  precision=precision))
    if chunks:
        return np.concatenate(chunks, axis=1)
    if not isinstance(model, IncrementalWaveNet) and is_gan_vocoder(model):
        return np.zeros((1 if mel is None or np.ndim(mel) == 2 else len(mel), 0), np.float32)
    spec = model.spec if isinstance(model, IncrementalWaveNet) else wavenet_spec(model)
    return np.zeros((int(_request(spec, num_samples, num_streams, classes, mel)[1]), 0), np.float32)


_NAIVE_FORWARDS = weakref.WeakKeyDictionary()


def _naive_forward(model):
    """`model`'s forward pass as one compiled call, kept while the model lives: traced again once the input's length
    varies, then for any length, where an eager call runs layer by layer at tens of milliseconds per sample. Without
    XLA, which would compile anew for every length (Keras' predict_on_batch turns it on where a GPU is present)."""
    if model not in _NAIVE_FORWARDS:
        import tensorflow as tf

        held = weakref.ref(model)  # not the model itself: the entry would keep its own key alive
        _NAIVE_FORWARDS[model] = tf.function(lambda x: held()(x, training=False), reduce_retracing=True,
                                             jit_compile=False)
    return _NAIVE_FORWARDS[model]


def generate_naive(model, num_samples=None, *, num_streams=None, temperature=1.0, prime=None, seed=None,
                   classes=None, mel=None):
    """The reference: runs the full model on the whole history for every sample. Slow; for tests and benches.

    It draws the same uniform numbers as `generate` and samples with the same rule, so with a seed both give
    the same audio. Conditioning goes through the model's own inputs: the class ids, and the padded spectrogram
    from its first frame (the first target, sample 0, is a frame boundary).
    """
    spec = wavenet_spec(model)
    num_samples, num_streams = _request(spec, num_samples, num_streams, classes, mel)
    _check(num_samples, num_streams, temperature)
    ids, padded = resolve_conditioning(spec, int(num_streams), classes, mel, prime)
    edges, table = mu_law_bin_edges(spec.num_classes), mu_law_table(spec.num_classes).astype(np.float64)
    code = DISTRIBUTION_CODES[spec.distribution]
    rng = np.random.default_rng(seed)
    if prime is None:
        history = np.full((num_streams, 1), mu_law_round_trip(np.zeros(1))[0], np.float32)
    else:
        prime = _as_audio(prime)
        history = mu_law_round_trip(np.broadcast_to(prime, (num_streams, prime.shape[-1])).copy())
    output = np.empty((num_streams, num_samples), np.float32)
    forward = _naive_forward(model)
    for i in range(num_samples):
        inputs = {spec.WAVEFORM: history[..., None]}
        if spec.class_names:
            inputs[spec.CLASS_ID] = ids[:, None]
        if spec.mel is not None:
            # History position j is conditioned on target sample j (output i is sample i).
            hop = spec.mel.hop_length
            inputs[spec.MEL] = padded[:, :(history.shape[1] - 1) // hop + 1 + 2 * CONTEXT_FRAMES]
        params = np.asarray(forward(inputs if spec.conditioned else inputs[spec.WAVEFORM]))
        params = params[:, -1].astype(np.float32)
        uniforms = rng.random((1, num_streams, DRAWS_PER_STEP))[0]
        value, fed = sample(params, float(temperature), uniforms, code, spec.num_mixtures, edges, table)
        output[:, i] = value
        history = np.concatenate([history, fed[:, None].astype(np.float32)], axis=1)
    return output
