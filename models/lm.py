"""A token language model over log-mel frames (AudioLM's idea, seed 002): audio -> tokens -> causal Transformer.

Each log-mel frame (`data.features`, the shared mel settings) becomes one token, the nearest entry of a k-means
codebook (`data.tokens`); a causal Transformer predicts the next token; the codebook turns tokens back into
log-mel frames, which Griffin-Lim or a vocoder (`models.generate` with a WaveNet or GAN vocoder) renders as audio.

The codebook and its mel settings live inside the model (`MelCodebook`), so one `.keras` file tokenises a prime
and turns generated tokens back into frames. The Transformer is pre-norm, with rotary position embeddings
(`RotaryCausalAttention`) in a band of `context` positions: attention depends only on how far apart two tokens
are, so cached generation (`CachedTokenLM`) keeps the last `context` keys and values of each layer and slides
along with no recomputation, computing what the model computes on the whole sequence.

Why not keras-hub's `TransformerDecoder` and `RotaryEmbedding`: keras-hub is not a dependency here (it brings its
own pins of Keras and TensorFlow companions), and the cached NumPy decoder reads every weight by name, which is
simplest with the few plain layers below.
"""

import math
import warnings
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

PACKAGE = "wavenet_lm"
ROTARY_BASE = 10000.0
# Models at least this wide split one stream's steps across cores (`CachedTokenLM.cores`). Measured with a full
# cache of 1024 tokens, 4 blocks and 4 heads on 2 cores: 219 -> 145 us a token at width 32, 272 -> 183 at 64;
# narrower models were not measured, and stay on one core.
SPLIT_WIDTH = 32


@keras.saving.register_keras_serializable(package=PACKAGE)
class TokenInput(keras.layers.Layer):
    """Takes token ids, clips them into the vocabulary, and records the vocabulary size and the context (tokens a
    training window holds; generation attends to at most this many).

    Args:
        vocabulary: number of tokens.
        context: tokens of context.
        **kwargs: standard layer arguments.

    Example:

    >>> TokenInput(16, 64)(np.array([[3, 20]])).numpy().tolist()
    [[3, 15]]
    """

    def __init__(self, vocabulary, context, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = int(vocabulary)
        self.context = int(context)

    def call(self, inputs):
        return ops.clip(ops.cast(inputs, "int32"), 0, self.vocabulary - 1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary, "context": self.context}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MelCodebook(keras.layers.Layer):
    """The codebook that turns log-mel frames into tokens and back, with the mel settings it was fitted on.

    Holds (not trained) the per-bin `mean` and `scale` of the training frames and the `centroids` of the
    normalised frames (`data.tokens.fit_codebook`; set with `set_codebook`). Called on token ids it returns their
    normalised centroids `(batch, time, n_mels)`: the model sees what each token sounds like.

    Args:
        settings: a `data.features.MelSettings` or its `to_dict()`.
        size: codebook entries (the vocabulary).
        **kwargs: standard layer arguments.

    Example:

    >>> from data.features import mel_settings
    >>> layer = MelCodebook(mel_settings(8000).to_dict(), 32)
    >>> layer(np.zeros((1, 5), "int32")).shape
    (1, 5, 80)
    """

    def __init__(self, settings, size, **kwargs):
        super().__init__(**kwargs)
        from data.features import MelSettings

        self.settings = settings if isinstance(settings, MelSettings) else MelSettings.from_dict(settings)
        self.size = int(size)

    def build(self, input_shape):
        bins = self.settings.n_mels
        self.mean = self.add_weight(shape=(bins,), initializer="zeros", trainable=False, name="mean")
        self.scale = self.add_weight(shape=(bins,), initializer="ones", trainable=False, name="scale")
        self.centroids = self.add_weight(shape=(self.size, bins), initializer="zeros", trainable=False,
                                         name="centroids")

    def set_codebook(self, codebook):
        """Stores a `data.tokens.Codebook` (mean, scale, centroids)."""
        if not self.built:
            self.build(None)
        self.mean.assign(np.asarray(codebook.mean, np.float32))
        self.scale.assign(np.asarray(codebook.scale, np.float32))
        self.centroids.assign(np.asarray(codebook.centroids, np.float32))

    def codebook(self):
        """The stored `data.tokens.Codebook`, as NumPy arrays."""
        from data.tokens import Codebook

        return Codebook(*(np.asarray(ops.convert_to_numpy(w), np.float32)
                          for w in (self.mean, self.scale, self.centroids)))

    def call(self, inputs):
        return ops.cast(ops.take(self.centroids, ops.cast(inputs, "int32"), axis=0), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.settings.n_mels)

    def get_config(self):
        return {**super().get_config(), "settings": self.settings.to_dict(), "size": self.size}


def rotary_frequencies(head_dim, base=ROTARY_BASE):
    """`(head_dim // 2,)` angles per position of rotary position embedding (NumPy, float64)."""
    return base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def rotate_numpy(x, cos, sin):
    """Rotary embedding of `x` (`(..., head_dim)`) by angles whose `cos`, `sin` broadcast to `(..., head_dim//2)`."""
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class RotaryCausalAttention(keras.layers.Layer):
    """Multi-head causal self-attention with rotary position embeddings (RoFormer; the half-split form that
    keras-hub's `RotaryEmbedding` uses).

    Position `t` attends to positions `t - window + 1 .. t` of its input (all of `0..t` without a window). The
    scores of a query and a key depend only on their distance, so generation keeps only the last `window` keys and
    values of each layer and computes exactly what this layer computes on the whole sequence (a training window
    no longer than `window` never meets the band). Scores and softmax are computed in float32 under mixed
    precision.

    Args:
        heads: attention heads.
        head_dim: channels per head (even).
        window: positions each one attends to, itself included; `None` for all before it.
        rotary_base: the rotary embedding's wavelength base.
        **kwargs: standard layer arguments.

    Example:

    >>> layer = RotaryCausalAttention(2, 8)
    >>> layer(np.zeros((1, 5, 16), "float32")).shape
    (1, 5, 16)
    """

    def __init__(self, heads, head_dim, window=None, rotary_base=ROTARY_BASE, **kwargs):
        super().__init__(**kwargs)
        if int(head_dim) % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {head_dim}")
        self.heads = int(heads)
        self.head_dim = int(head_dim)
        self.window = None if window is None else int(window)
        self.rotary_base = float(rotary_base)

    def build(self, input_shape):
        width, inner = int(input_shape[-1]), self.heads * self.head_dim
        self.qkv_kernel = self.add_weight(shape=(width, 3 * inner), initializer="glorot_uniform", name="qkv_kernel")
        self.qkv_bias = self.add_weight(shape=(3 * inner,), initializer="zeros", name="qkv_bias")
        self.output_kernel = self.add_weight(shape=(inner, width), initializer="glorot_uniform",
                                             name="output_kernel")
        self.output_bias = self.add_weight(shape=(width,), initializer="zeros", name="output_bias")

    def _rotate(self, x, cos, sin):
        # Splits, not slices: a slice's gradient scatters into zeros, a split's is one concatenation.
        first, second = ops.split(x, 2, axis=-1)
        return ops.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)

    def call(self, inputs):
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        qkv = ops.matmul(inputs, ops.cast(self.qkv_kernel, self.compute_dtype)) + ops.cast(self.qkv_bias,
                                                                                          self.compute_dtype)
        qkv = ops.reshape(qkv, (batch, length, 3, self.heads, self.head_dim))
        query, key, value = ops.unstack(qkv, 3, axis=2)
        inverse = self.rotary_base ** (-ops.arange(0, self.head_dim, 2, dtype="float32") / self.head_dim)
        angles = ops.arange(length, dtype="float32")[:, None] * inverse[None, :]
        cos = ops.cast(ops.cos(angles), self.compute_dtype)[None, :, None, :]
        sin = ops.cast(ops.sin(angles), self.compute_dtype)[None, :, None, :]
        query, key = self._rotate(query, cos, sin), self._rotate(key, cos, sin)
        scores = ops.einsum("bqhd,bkhd->bhqk", query, key)
        scores = ops.cast(scores, "float32") / math.sqrt(self.head_dim)
        back = ops.arange(length)[:, None] - ops.arange(length)[None, :]  # query position - key position
        causal = back >= 0 if self.window is None else ops.logical_and(back >= 0, back < self.window)
        scores = ops.where(causal[None, None], scores, ops.full_like(scores, -1e9))
        weights = ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype)
        mixed = ops.einsum("bhqk,bkhd->bqhd", weights, value)
        mixed = ops.reshape(mixed, (batch, length, self.heads * self.head_dim))
        return ops.matmul(mixed, ops.cast(self.output_kernel, self.compute_dtype)) + ops.cast(self.output_bias,
                                                                                              self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "head_dim": self.head_dim, "window": self.window,
                "rotary_base": self.rotary_base}


class LMSpec(NamedTuple):
    """What generation needs to know of a token language model."""

    sample_rate: int
    mel: object  # data.features.MelSettings
    vocabulary: int
    context: int
    layers: int
    heads: int
    head_dim: int
    model_dim: int


def build_token_lm(settings, vocabulary, context, model_dim=128, layers=4, heads=4, ffn_dim=None, dropout=0.1,
                   name="token_lm"):
    """A causal Transformer over mel tokens: `(batch, time)` int32 tokens in, `(batch, time, vocabulary)` float32
    next-token logits out.

    Args:
        settings: the `data.features.MelSettings` the tokens' frames are computed with.
        vocabulary: codebook entries (tokens).
        context: tokens per training window, and the band of every attention layer: each position attends to
            the `context` positions up to itself, so a sequence of any length can be scored or generated.
        model_dim: width of the residual stream.
        layers: Transformer blocks.
        heads: attention heads per block (`model_dim` must divide by it, into an even head width).
        ffn_dim: hidden width of each block's feed-forward part; default `4 * model_dim`.
        dropout: dropout rate on the embedding and each block's two branches (training only).
        name: the model's name.

    Example:

    >>> from data.features import mel_settings
    >>> lm = build_token_lm(mel_settings(8000), vocabulary=64, context=128, model_dim=32, layers=2, heads=2)
    >>> lm(np.zeros((1, 10), "int32")).shape
    (1, 10, 64)
    """
    if model_dim % heads or (model_dim // heads) % 2:
        raise ValueError(f"model_dim {model_dim} must split into {heads} heads of an even width")
    ffn_dim = int(ffn_dim or 4 * model_dim)
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    ids = TokenInput(vocabulary, context, name="token_input")(tokens)
    embedded = keras.layers.Embedding(vocabulary, model_dim, name="token_embedding")(ids)
    sound = MelCodebook(settings, vocabulary, name="codebook")(ids)
    x = keras.layers.Add(name="embedding")([embedded, keras.layers.Dense(model_dim, name="codebook_projection")(sound)])
    x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(layers):
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"block_{i}_attention_norm")(x)
        h = RotaryCausalAttention(heads, model_dim // heads, window=context, name=f"block_{i}_attention")(h)
        h = keras.layers.Dropout(dropout, name=f"block_{i}_attention_dropout")(h)
        x = keras.layers.Add(name=f"block_{i}_attention_residual")([x, h])
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"block_{i}_ffn_norm")(x)
        h = keras.layers.Dense(ffn_dim, activation="gelu", name=f"block_{i}_ffn_in")(h)
        h = keras.layers.Dense(model_dim, name=f"block_{i}_ffn_out")(h)
        h = keras.layers.Dropout(dropout, name=f"block_{i}_ffn_dropout")(h)
        x = keras.layers.Add(name=f"block_{i}_ffn_residual")([x, h])
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    logits = keras.layers.Dense(vocabulary, dtype="float32", name="logits")(x)
    return keras.Model(tokens, logits, name=name)


def is_token_lm(model):
    """Whether `model` is a token language model of `build_token_lm`."""
    names = {layer.name for layer in model.layers}
    return {"token_input", "codebook", "logits"} <= names


def lm_spec(model):
    """The `LMSpec` of a token language model.

    Raises:
        ValueError: not a model of `build_token_lm`.
    """
    if not is_token_lm(model):
        raise ValueError(f"model {model.name!r} is not a token language model built by models.build_token_lm")
    settings = model.get_layer("codebook").settings
    token_input = model.get_layer("token_input")
    layers = 0
    while any(layer.name == f"block_{layers}_attention" for layer in model.layers):
        layers += 1
    attention = model.get_layer("block_0_attention")
    return LMSpec(settings.sample_rate, settings, token_input.vocabulary, token_input.context, layers,
                  attention.heads, attention.head_dim, attention.heads * attention.head_dim)


def set_codebook(model, codebook):
    """Stores a fitted `data.tokens.Codebook` in a token language model."""
    model.get_layer("codebook").set_codebook(codebook)


def codebook_of(model):
    """The `data.tokens.Codebook` stored in a token language model."""
    return model.get_layer("codebook").codebook()


def tokenize(model, signal):
    """The tokens of a 1-D signal at the model's rate: its log-mel frames, each the nearest codebook entry."""
    from data.features import log_mel
    from data.tokens import encode_frames

    return encode_frames(log_mel(signal, lm_spec(model).mel), *codebook_of(model))


def detokenize(model, tokens):
    """The log-mel frames `(..., n_mels)` of `tokens`: their codebook entries, floored at the log floor."""
    from data.tokens import decode_tokens

    return decode_tokens(tokens, *codebook_of(model), floor=lm_spec(model).mel.floor_value)


def silence_token(model):
    """The token nearest a silent frame: where generation without a prime starts."""
    from data.tokens import encode_frames

    spec = lm_spec(model)
    return int(encode_frames(np.full((1, spec.mel.n_mels), spec.mel.floor_value, np.float32), *codebook_of(model))[0])


def _layer_norm(x, gamma, beta, epsilon=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


# None until the compiled step has been tried; then "built", or why it could not be used.
_KERNEL_STATUS = None


def _step_engine(engine):
    """`"numba"` or `"numpy"` for the engine asked for (`models.generation.ENGINES`; default `$WAVEGEN_ENGINE`,
    else auto: the compiled step, and NumPy with a warning if it cannot be built)."""
    global _KERNEL_STATUS
    from models.generation import engine_name

    engine = engine_name(engine)
    if engine == "numpy" or (engine == "auto" and _KERNEL_STATUS not in (None, "built")):
        return "numpy"
    if _KERNEL_STATUS != "built":
        try:  # one step of a throwaway model of the same array types compiles (or loads) the kernel
            from models import lm_kernel

            f = np.zeros
            lm_kernel.step(f((1, 2), np.float32), 0, f(1, np.float32), f(1, np.float32), f((1, 2, 2), np.float32),
                           f((1, 2, 6), np.float32), f((1, 6), np.float32), f((1, 2, 2), np.float32),
                           f((1, 2), np.float32), f((1, 2, 2), np.float32), f((1, 2, 4), np.float32),
                           f((1, 4), np.float32), f((1, 4, 2), np.float32), f((1, 2), np.float32),
                           f((2, 2), np.float32), f((2, 3), np.float32), f(3, np.float32),
                           f((1, 1, 1, 2, 2), np.float32), f((1, 1, 1, 2, 2), np.float32), f((1, 3), np.float32))  # noqa
            _KERNEL_STATUS = "built"
        except Exception as error:  # numba missing, or LLVM cannot build the kernel for this CPU
            if engine == "numba":
                raise
            _KERNEL_STATUS = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
            warnings.warn(f"compiled token LM step unavailable ({_KERNEL_STATUS}); using NumPy", RuntimeWarning,
                          stacklevel=3)
            return "numpy"
    return "numba"


class LMWeights(NamedTuple):
    """A token LM's block weights for cached decoding, each stacked over the blocks (first axis: the layer), then
    the final norm and the logits layer; in the order `models.lm_kernel.step` takes them."""

    attention_norms: np.ndarray  # (layers, 2, width): gamma, beta
    qkv_kernels: np.ndarray
    qkv_biases: np.ndarray
    output_kernels: np.ndarray
    output_biases: np.ndarray
    ffn_norms: np.ndarray
    inner_kernels: np.ndarray
    inner_biases: np.ndarray
    outer_kernels: np.ndarray
    outer_biases: np.ndarray
    final_norm: np.ndarray  # (2, width)
    logits_kernel: np.ndarray
    logits_bias: np.ndarray


class CachedTokenLM:
    """Token-by-token generation with each layer's keys and values kept (float32), several streams at once.

    It reads the weights of a `build_token_lm` model by layer name, so it computes what the Keras model computes
    (inference: no dropout). Keys and values of the last `context` tokens are kept in a ring per layer (each
    attention layer's band); a step costs the same at token 10 and token 100,000, and its logits equal the Keras
    model's on the whole sequence (tested). A step runs in the compiled kernel (`models.lm_kernel`) or, portably,
    in NumPy; both compute the same logits (to float32 rounding, tested).

    One stream on the compiled kernel is split across cores (`models.lm_kernel.SplitDecoder`, the same logits to
    the bit): helper threads then wait in compiled code between steps, spinning, until `close()` or `reset()`
    (`generate_tokens` closes its decoder when it returns).

    Args:
        model: a token language model (built or loaded).
        engine: `"auto"`, `"numba"` or `"numpy"`; default `$WAVEGEN_ENGINE`, else auto.
        split_cores: cores that share one stream's steps; `None` chooses numba's thread count (at most one per
            head) for models `SPLIT_WIDTH` wide or wider, where the halves save more than the meetings cost.

    Example:

    >>> lm = CachedTokenLM(model)
    >>> lm.reset(num_streams=2)
    >>> logits = lm.step(np.array([0, 5]))   # (2, vocabulary)
    """

    def __init__(self, model, engine=None, split_cores=None):
        self.spec = lm_spec(model)
        self.engine = _step_engine(engine)
        self.split_cores = split_cores
        self._split = None

        def weights(name):
            return [np.asarray(ops.convert_to_numpy(w), np.float32) for w in model.get_layer(name).weights]

        codebook = codebook_of(model)
        projection, projection_bias = weights("codebook_projection")
        # A token's embedding plus its projected sound is one table lookup.
        self.embedding = weights("token_embedding")[0] + codebook.centroids @ projection + projection_bias
        layers = range(self.spec.layers)
        blocks = {part: [weights(f"block_{i}_{part}") for i in layers]
                  for part in ("attention_norm", "attention", "ffn_norm", "ffn_in", "ffn_out")}

        def stacked(part, index):
            return np.stack([block[index] for block in blocks[part]])

        # Every block's weights stacked along a first axis of layers: what the NumPy path indexes and the kernel
        # takes, in its argument order.
        self.weights = LMWeights(np.stack([np.stack(norm) for norm in blocks["attention_norm"]]),
                                 *(stacked("attention", i) for i in range(4)),
                                 np.stack([np.stack(norm) for norm in blocks["ffn_norm"]]),
                                 stacked("ffn_in", 0), stacked("ffn_in", 1), stacked("ffn_out", 0),
                                 stacked("ffn_out", 1), np.stack(weights("final_norm")), *weights("logits"))
        self.rotary_base = model.get_layer("block_0_attention").rotary_base
        self.inverse_frequencies = rotary_frequencies(self.spec.head_dim, self.rotary_base)
        self.silence = silence_token(model)
        self.num_streams, self.position = 0, 0

    def cores(self):
        """Cores that share each step of the current streams (1: no split)."""
        if self.engine != "numba" or self.num_streams != 1:
            return 1
        if self.split_cores is not None:
            return max(1, min(int(self.split_cores), self.spec.heads))
        import numba

        return min(numba.get_num_threads(), self.spec.heads) if self.spec.model_dim >= SPLIT_WIDTH else 1

    def close(self):
        """Stops the helper threads of a split stream, if any (a later step starts them again)."""
        if getattr(self, "_split", None) is not None:  # (also from __del__ of a half-made decoder)
            self._split.close()
            self._split = None

    def __del__(self):
        self.close()

    def reset(self, num_streams):
        """Empties the caches for `num_streams` streams, at position 0."""
        self.close()
        spec = self.spec
        shape = (spec.layers, int(num_streams), spec.heads, spec.context, spec.head_dim)
        # Keys transposed, (..., head_dim, context): a query's scores are one product with them.
        self.keys = np.zeros((*shape[:3], spec.head_dim, spec.context), np.float32)
        self.values = np.zeros(shape, np.float32)
        self.num_streams, self.position = int(num_streams), 0

    def step(self, tokens):
        """Feeds one token per stream (`(num_streams,)` ints); returns the next token's logits `(streams, vocab)`."""
        spec = self.spec
        streams, heads, head_dim = self.num_streams, spec.heads, spec.head_dim
        tokens = np.clip(np.asarray(tokens, np.int64).reshape(streams), 0, spec.vocabulary - 1)
        x = self.embedding[tokens]
        angles = self.position * self.inverse_frequencies
        cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
        if self.engine == "numba":
            from models import lm_kernel

            cores = self.cores() if self._split is None else 0
            if cores > 1:
                self._split = lm_kernel.SplitDecoder(self.weights, self.keys, self.values, cores)
            if self._split is not None:
                logits = self._split.step(x[0], self.position, cos, sin)[None]
            else:
                logits = np.empty((streams, spec.vocabulary), np.float32)
                lm_kernel.step(x, self.position, cos, sin, *self.weights, self.keys, self.values, logits)
            self.position += 1
            return logits
        slot = self.position % spec.context
        seen = min(self.position + 1, spec.context)
        w = self.weights
        for layer, keys, values in zip(range(spec.layers), self.keys, self.values):
            h = _layer_norm(x, *w.attention_norms[layer])
            qkv = (h @ w.qkv_kernels[layer] + w.qkv_biases[layer]).reshape(streams, 3, heads, head_dim)
            keys[:, :, :, slot] = rotate_numpy(qkv[:, 1], cos, sin)
            values[:, :, slot] = qkv[:, 2]
            query = rotate_numpy(qkv[:, 0], cos, sin)[:, :, None, :]  # (streams, heads, 1, head_dim)
            scores = (query / math.sqrt(head_dim)) @ keys[:, :, :, :seen]
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            mixed = (scores @ values[:, :, :seen]) / scores.sum(axis=-1, keepdims=True)
            x = x + mixed.reshape(streams, heads * head_dim) @ w.output_kernels[layer] + w.output_biases[layer]
            h = _layer_norm(x, *w.ffn_norms[layer])
            inner = _gelu(h @ w.inner_kernels[layer] + w.inner_biases[layer]).astype(np.float32)
            x = x + inner @ w.outer_kernels[layer] + w.outer_biases[layer]
        self.position += 1
        return _layer_norm(x, *w.final_norm) @ w.logits_kernel + w.logits_bias

    def feed(self, tokens):
        """Feeds `(num_streams, time)` tokens one step at a time; returns the logits after the last."""
        tokens = np.asarray(tokens)
        logits = None
        for t in range(tokens.shape[1]):
            logits = self.step(tokens[:, t])
        return logits


def generate_tokens(model, num_tokens, *, num_streams=1, prime=None, temperature=1.0, top_k=0, top_p=1.0,
                    seed=None, progress=None, engine=None):
    """Samples `num_tokens` tokens per stream with cached incremental decoding.

    Args:
        model: a token language model, or a `CachedTokenLM` of one.
        num_tokens: tokens to generate per stream.
        num_streams: independent streams, decoded together.
        prime: tokens to continue, 1-D (every stream) or `(num_streams, time)`; only the last `context` matter.
            Default: the silence token (`silence_token`).
        temperature: >= 0; 0 takes the most likely token.
        top_k: sample among the `top_k` most likely tokens only (0: all).
        top_p: sample among the most likely tokens whose probabilities add up to `top_p` (1: all).
        seed: integer seed; the same seed gives the same tokens.
        progress: optional `progress(done)` called after each token.
        engine: the decoder's step and the sampling, `"auto"`, `"numba"` or `"numpy"` (`CachedTokenLM`); the same
            tokens either way.

    Returns:
        `(num_streams, num_tokens)` int32.
    """
    from models.sampling import filtered_categorical

    decoder = model if isinstance(model, CachedTokenLM) else CachedTokenLM(model, engine)
    spec = decoder.spec
    prime = np.array([decoder.silence]) if prime is None else prime
    prime = np.asarray(prime, np.int64)
    if prime.ndim == 1:
        prime = np.broadcast_to(prime, (num_streams, len(prime)))
    if prime.shape[0] != num_streams or prime.shape[1] < 1:
        raise ValueError(f"a prime must hold at least one token per stream ({num_streams}), got shape {prime.shape}")
    if decoder.engine == "numba":
        from models.lm_kernel import filtered_categorical as draw
    else:
        draw = filtered_categorical
    decoder.reset(num_streams)
    try:
        logits = decoder.feed(prime[:, -spec.context:])
        rng = np.random.default_rng(seed)
        out = np.empty((num_streams, int(num_tokens)), np.int32)
        for t in range(int(num_tokens)):
            out[:, t] = draw(logits, temperature, rng.random(num_streams), top_k, top_p)
            if progress is not None:
                progress(t + 1)
            if t + 1 < num_tokens:
                logits = decoder.step(out[:, t])
    finally:
        decoder.close()
    return out


def check_vocoder(lm_settings, vocoder, name="vocoder"):
    """The vocoder's `VocoderSpec`/`WaveNetSpec` if `vocoder` is a WaveNet or GAN vocoder with the LM's mel
    settings.

    Raises:
        ValueError: not a vocoder, or a vocoder of other mel settings (the message names both).
    """
    from models.gan_vocoder import is_gan_vocoder, vocoder_spec
    from models.wavenet import wavenet_spec

    try:
        spec = vocoder_spec(vocoder) if is_gan_vocoder(vocoder) else wavenet_spec(vocoder)
    except ValueError:
        raise ValueError(f"{name}: not a vocoder (a WaveNet or GAN vocoder conditioned on log-mel spectrograms)") \
            from None
    if spec.mel is None:
        raise ValueError(f"{name}: a WaveNet without mel conditioning is not a vocoder; give one trained with "
                         "train_wavenet.py --condition mel, or train_gan.py --condition mel")
    if spec.mel != lm_settings:
        raise ValueError(f"{name}: its mel settings ({spec.mel.describe()}) differ from the language model's "
                         f"({lm_settings.describe()})")
    if spec.class_names:
        raise ValueError(f"{name}: a class-conditioned vocoder needs a class, which the language model has none "
                         "of; give a vocoder without classes")
    return spec


def render_frames(mel, settings, vocoder=None, temperature=0.7, seed=None, engine=None):
    """Audio `(streams, (frames - 1) * hop)` of log-mel frames `(streams, frames, n_mels)`: Griffin-Lim (librosa,
    32 iterations) without a vocoder, else the vocoder (`check_vocoder`) through `models.generate` (a WaveNet
    vocoder samples at `temperature` with `seed` on `engine`)."""
    mel = np.asarray(mel, np.float32)
    mel = mel[None] if mel.ndim == 2 else mel
    if vocoder is None:
        from data.features import griffin_lim

        return np.stack([griffin_lim(rows, settings, seed=0 if seed is None else seed) for rows in mel])
    from models.gan_vocoder import is_gan_vocoder
    from models.generation import generate

    if is_gan_vocoder(vocoder):
        return generate(vocoder, mel=mel)
    return generate(vocoder, mel=mel, temperature=temperature, seed=seed, engine=engine)
