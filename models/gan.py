"""WaveGAN-style convolutional GAN for fixed-length audio clips (Donahue et al., 2019)."""

import keras
import numpy as np
from keras import ops

from models.layers import PACKAGE, AudioInput, ClassEmbedding, class_ids
from models.replicas import replica_position, replica_share

SLICE_LENGTHS = (4096, 8192, 16384, 32768, 65536)
KERNEL_SIZE, STRIDE, UPSAMPLING_LAYERS = 25, 4, 5
LOSSES = ("wgan-gp", "bce")


def _base_length(slice_length):
    if slice_length not in SLICE_LENGTHS:
        raise ValueError(f"slice_length must be one of {SLICE_LENGTHS}, got {slice_length}")
    return slice_length // STRIDE ** UPSAMPLING_LAYERS


@keras.saving.register_keras_serializable(package=PACKAGE)
class PhaseShuffle(keras.layers.Layer):
    """Shifts each example in time by a random whole number of samples in [-radius, radius], filling the
    edge by reflection, so the discriminator cannot key on the generator's periodic upsampling artefacts.
    Identity at inference.

    Args:
        radius: the largest shift; 0 disables the layer.
        seed: optional seed for the shifts.
        **kwargs: standard layer arguments.

    Example:

    >>> layer = PhaseShuffle(2)
    >>> layer(np.zeros((4, 100, 8)), training=True).shape
    TensorShape([4, 100, 8])
    """

    def __init__(self, radius=2, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.radius = int(radius)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or self.radius == 0:
            return inputs
        radius = self.radius
        batch, length, channels = ops.shape(inputs)[0], ops.shape(inputs)[1], ops.shape(inputs)[2]
        # Drawn for the global batch under tf.distribute, so shifts do not depend on the replica count.
        shifts = replica_share(lambda n: keras.random.randint((n,), -radius, radius + 1, seed=self.seed_generator),
                               batch)
        # Output t of an example shifted by k is input t - k, reflected at both ends: a slice of the input padded by
        # reflection. One depthwise convolution takes every example's slice: the examples' channels side by side,
        # time as the rows, each example's kernel one-hot at radius - k. One op (its gradient another) instead of a
        # weighted sum of 2 x radius + 1 slices, whose many small ops the gradient penalty's double backward
        # multiplied; and no gather, whose gradient is a scatter (a third of the critic's forward and backward).
        padded = ops.pad(inputs, [[0, 0], [radius, radius], [0, 0]], mode="reflect")
        side_by_side = ops.reshape(ops.transpose(padded, (1, 0, 2)), (1, length + 2 * radius, 1, batch * channels))
        chosen = ops.transpose(ops.cast(ops.one_hot(radius - shifts, 2 * radius + 1), inputs.dtype))
        kernel = ops.reshape(ops.repeat(chosen[:, :, None], channels, axis=2),
                             (2 * radius + 1, 1, batch * channels, 1))
        output = ops.depthwise_conv(side_by_side, kernel, strides=1, padding="valid")
        return ops.transpose(ops.reshape(output, (length, batch, channels)), (1, 0, 2))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "radius": self.radius, "seed": self.seed}


def build_generator(latent_dim=100, model_dim=64, slice_length=16384, sample_rate=16000, name="generator",
                    class_names=(), class_channels=16):
    """WaveGAN generator: z -> Dense -> reshape -> five transposed 1-D convolutions (kernel 25, stride 4) -> tanh.

    With `class_names`, a second input `class_id` `(batch, 1)` picks a learned vector of `class_channels` that is
    joined to z before the Dense layer (a conditional GAN).

    Args:
        latent_dim: size of z (uniform in [-1, 1]).
        model_dim: width multiplier; channels go 16d, 8d, 4d, 2d, d, 1.
        slice_length: output samples; one of 4096, 8192, 16384, 32768, 65536 (the Dense output length adapts).
        sample_rate: the training audio's rate, saved with the model.
        name: the model's name.
        class_names: the classes of a class-conditional generator, in id order (empty: unconditional).
        class_channels: size of each class's vector.

    Example:

    >>> g = build_generator(model_dim=4, slice_length=4096)
    >>> g(np.zeros((2, 100), "float32")).shape
    TensorShape([2, 4096, 1])
    """
    base = _base_length(slice_length)
    z = keras.Input(shape=(latent_dim,), name="z")
    inputs, x = z, z
    if class_names:
        class_id = keras.Input(shape=(1,), dtype="int32", name="class_id")
        vector = ClassEmbedding(class_names, class_channels, name="class_embedding")(class_id)
        vector = keras.layers.Reshape((class_channels,), name="class_vector")(vector)
        inputs, x = [z, class_id], keras.layers.Concatenate(name="latent_and_class")([z, vector])
    x = keras.layers.Dense(base * 16 * model_dim, name="project")(x)
    x = keras.layers.Reshape((base, 16 * model_dim), name="reshape")(x)
    x = keras.layers.ReLU(name="project_relu")(x)
    for i, channels in enumerate((8 * model_dim, 4 * model_dim, 2 * model_dim, model_dim)):
        x = keras.layers.Conv1DTranspose(channels, KERNEL_SIZE, strides=STRIDE, padding="same", activation="relu",
                                         name=f"upconv_{i}")(x)
    x = keras.layers.Conv1DTranspose(1, KERNEL_SIZE, strides=STRIDE, padding="same", activation="tanh",
                                     name="upconv_4")(x)
    return keras.Model(inputs, AudioInput(sample_rate, name="audio", dtype="float32")(x), name=name)


def build_discriminator(model_dim=64, slice_length=16384, phase_shuffle=2, sample_rate=16000,
                        name="discriminator", class_names=(), pack=1):
    """WaveGAN discriminator: five strided 1-D convolutions (kernel 25, stride 4) with LeakyReLU(0.2) and phase
    shuffle -> Dense(1) score (a logit for `bce`, a critic value for `wgan-gp`).

    With `class_names`, a second input `class_id` `(batch, 1)` adds the projection term of Miyato & Koyama (2018):
    the inner product of a learned vector of the class with the flattened features.

    With `pack` > 1 it scores `pack` clips at once, given as the channels of its input `(batch, slice_length, pack)`
    (PacGAN, Lin et al., 2018): clips that are all alike, as a collapsed generator's are, are then told from real
    ones that differ. `WaveGAN` packs its batches for it (`pack_clips`).

    Args:
        model_dim: width multiplier; channels go d, 2d, 4d, 8d, 16d.
        slice_length: input samples.
        phase_shuffle: phase-shuffle radius after each of the first four convolutions (0: none).
        sample_rate: the audio's rate, saved with the model.
        name: the model's name.
        class_names: the classes of a class-conditional discriminator, in id order (empty: unconditional).
        pack: clips scored together (1: each alone); unconditional only.
    """
    _base_length(slice_length)
    if int(pack) != pack or pack < 1 or (pack > 1 and class_names):
        raise ValueError(f"pack must be a whole number of 1 or more, and 1 for a class-conditional discriminator; "
                         f"got {pack} with {len(class_names)} classes")
    audio = keras.Input(shape=(slice_length, int(pack)), name="waveform")
    x = AudioInput(sample_rate, name="audio")(audio)
    for i, channels in enumerate((model_dim, 2 * model_dim, 4 * model_dim, 8 * model_dim, 16 * model_dim)):
        x = keras.layers.Conv1D(channels, KERNEL_SIZE, strides=STRIDE, padding="same", name=f"conv_{i}")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"conv_{i}_lrelu")(x)
        if i < 4 and phase_shuffle:
            x = PhaseShuffle(phase_shuffle, name=f"phase_shuffle_{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    score = keras.layers.Dense(1, name="score", dtype="float32")(x)
    if not class_names:
        return keras.Model(audio, score, name=name)
    class_id = keras.Input(shape=(1,), dtype="int32", name="class_id")
    vector = ClassEmbedding(class_names, x.shape[-1], name="class_projection")(class_id)
    vector = keras.layers.Reshape((x.shape[-1],), name="class_projection_vector")(vector)
    projection = keras.layers.Dot(axes=1, name="projection", dtype="float32")([x, vector])
    score = keras.layers.Add(name="conditional_score", dtype="float32")([score, projection])
    return keras.Model([audio, class_id], score, name=name)


class TwoOptimizerGAN(keras.Model):
    """What both GAN trainers (`WaveGAN`, `models.gan_vocoder.VocoderGAN`) share: a generator and a discriminator,
    each with its own optimiser, given to `compile`.

    Args:
        generator: the generator network.
        discriminator: the discriminator network.
        **kwargs: standard model arguments.
    """

    def __init__(self, generator, discriminator, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        # Both networks are built functional models; marking this one built spares Keras a symbolic call of it
        # on a batch of audio (`call` takes the generator's input), which a tf.distribute strategy would make.
        self.built = generator.built and discriminator.built

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        # No optimiser of its own: the two below do the work (Keras' default would build one for both networks).
        super().compile(optimizer=None, **kwargs)
        if keras.config.dtype_policy().name == "mixed_float16":
            # float16 gradients underflow without loss scaling; bfloat16 needs none.
            d_optimizer = keras.optimizers.LossScaleOptimizer(d_optimizer)
            g_optimizer = keras.optimizers.LossScaleOptimizer(g_optimizer)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        # Their variables are made now, in the caller's (strategy's) scope, not inside the first traced step.
        d_optimizer.build(self.discriminator.trainable_variables)
        g_optimizer.build(self.generator.trainable_variables)

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    @staticmethod
    def _per_replica(loss):
        """`loss` divided by the replicas in sync: their gradients are summed, and the sum is then the gradient of
        the global batch's mean (as Keras' own `compute_loss` does)."""
        return loss / replica_position()[1]


class WaveGAN(TwoOptimizerGAN):
    """Trains a generator and a discriminator together with `fit`.

    Each batch holds `critic_steps` x batch_size real slices: the discriminator takes one step on each part,
    then the generator one step (WGAN-GP: 5 critic steps per generator step, as in WaveGAN).

    Losses:
        - `"wgan-gp"`: Wasserstein critic with gradient penalty `gp_weight` (Gulrajani et al., 2017).
        - `"bce"`: the seed document's cross-entropy discriminator, with the non-saturating generator loss.

    A discriminator built with `pack` > 1 scores groups of that many clips (`pack_clips`); the batch size must be
    a multiple of it, and the gradient penalty mixes real and generated groups.

    Args:
        generator: from `build_generator`.
        discriminator: from `build_discriminator`.
        latent_dim: size of z.
        loss: `"wgan-gp"` or `"bce"`.
        gp_weight: gradient-penalty weight.
        critic_steps: discriminator steps per generator step.

    Example:

    >>> gan = WaveGAN(build_generator(), build_discriminator())
    >>> gan.compile(d_optimizer=keras.optimizers.Adam(1e-4, 0.5, 0.9),
    ...             g_optimizer=keras.optimizers.Adam(1e-4, 0.5, 0.9))
    >>> gan.fit(slices, epochs=10)
    """

    def __init__(self, generator, discriminator, latent_dim=100, loss="wgan-gp", gp_weight=10.0, critic_steps=5,
                 **kwargs):
        super().__init__(generator, discriminator, **kwargs)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.latent_dim = int(latent_dim)
        self.gan_loss = loss
        self.gp_weight = float(gp_weight)
        self.critic_steps = int(critic_steps)
        self.latent_seed = keras.random.SeedGenerator(0)
        # Clips the discriminator scores together: the channels of its waveform input (build_discriminator's pack;
        # the discriminator is a functional model, as build_discriminator makes).
        self.pack = int(self.discriminator.inputs[0].shape[-1])
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.gp_tracker = keras.metrics.Mean(name="gradient_penalty")

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.gp_tracker]

    def sample_latents(self, count):
        return replica_share(lambda n: keras.random.uniform((n, self.latent_dim), -1.0, 1.0, seed=self.latent_seed),
                             count)

    def _generate(self, batch, ids, training=True):
        z = self.sample_latents(batch)
        return self.generator(z if ids is None else [z, ids], training=training)

    def pack_clips(self, audio):
        """Groups consecutive clips for a packed discriminator.

        Args:
            audio: `(batch, length, 1)` clips, `batch` a multiple of `pack`.

        Returns:
            `(batch / pack, length, pack)`: group k holds clips `k * pack` to `k * pack + pack - 1` as channels
            (`audio` itself when `pack` is 1).
        """
        if self.pack == 1:
            return audio
        length = ops.shape(audio)[1]
        return ops.transpose(ops.reshape(audio, (-1, self.pack, length)), (0, 2, 1))

    def _score_packed(self, packed, ids, training=True):
        return self.discriminator(packed if ids is None else [packed, ids], training=training)

    def _score(self, audio, ids, training=True):
        """The discriminator's scores of clips (of groups of `pack` clips)."""
        return self._score_packed(self.pack_clips(audio), ids, training)

    def _critic_loss(self, real, fake, ids=None, training=True):
        real_score = self._score(real, ids, training)
        fake_score = self._score(fake, ids, training)
        if self.gan_loss == "bce":
            bce = keras.losses.binary_crossentropy
            return (ops.mean(bce(ops.ones_like(real_score), real_score, from_logits=True))
                    + ops.mean(bce(ops.zeros_like(fake_score), fake_score, from_logits=True)))
        return ops.mean(fake_score) - ops.mean(real_score)

    def _generator_loss(self, fake_score):
        if self.gan_loss == "bce":
            return ops.mean(keras.losses.binary_crossentropy(ops.ones_like(fake_score), fake_score,
                                                             from_logits=True))
        return -ops.mean(fake_score)

    def discriminator_step(self, real, ids=None):
        """One optimiser step of the discriminator on `real` slices and as many generated ones (of the same
        classes `ids`, `(batch, 1)`, for a class-conditional GAN).

        Returns:
            `(d_loss, gradient_penalty)`.
        """
        import tensorflow as tf  # the steps are backend-specific, as in Keras' "customizing fit" guide

        batch = ops.shape(real)[0]
        if isinstance(batch, int) and batch % self.pack:
            raise ValueError(f"a batch of {batch} clips does not split into groups of pack={self.pack}")
        if not isinstance(batch, int) and self.pack > 1:  # in fit's graph the batch size is known only when it runs
            tf.debugging.assert_equal(batch % self.pack, 0, message=f"a batch of clips does not split into groups "
                                                                    f"of pack={self.pack}")
        fake = self._generate(batch, ids)
        penalty = ops.zeros(())
        with tf.GradientTape() as tape:
            d_loss = self._critic_loss(real, fake, ids)
            if self.gan_loss == "wgan-gp":
                # One mix per scored group, the penalty on the gradient with respect to the whole group.
                mix = replica_share(lambda n: keras.random.uniform((n, 1, 1), seed=self.latent_seed),
                                    batch // self.pack)
                between = (mix * self.pack_clips(real)
                           + (1.0 - mix) * self.pack_clips(ops.cast(fake, "float32")))
                with tf.GradientTape() as inner:
                    inner.watch(between)
                    score = self._score_packed(between, ids)
                gradients = inner.gradient(score, between)
                norms = ops.sqrt(ops.sum(ops.square(gradients), axis=[1, 2]) + 1e-12)
                penalty = ops.mean(ops.square(norms - 1.0))
                d_loss = d_loss + self.gp_weight * penalty
            # Scaled inside the tape: the tape records only what is computed within it.
            scaled = self.d_optimizer.scale_loss(self._per_replica(d_loss))
        variables = self.discriminator.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.d_optimizer.apply_gradients(zip(gradients, variables))
        return d_loss, penalty

    def generator_step(self, batch, ids=None):
        """One optimiser step of the generator on `batch` latent vectors (of classes `ids` when conditional); the
        discriminator is only read.

        Returns:
            the generator loss.
        """
        import tensorflow as tf

        with tf.GradientTape() as tape:
            fake = self._generate(batch, ids)
            g_loss = self._generator_loss(self._score(fake, ids))
            scaled = self.g_optimizer.scale_loss(self._per_replica(g_loss))
        variables = self.generator.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.g_optimizer.apply_gradients(zip(gradients, variables))
        return g_loss

    def critic_loop(self, real, ids, steps, batch):
        """`steps` discriminator steps, each on its own `batch` real slices (and their classes); returns the last
        one's `(d_loss, gradient_penalty)`."""
        import tensorflow as tf

        def step_on(step):
            part = slice(step * batch, (step + 1) * batch)
            return self.discriminator_step(real[part], None if ids is None else ids[part])

        if steps == 1 or tf.executing_eagerly() or tf.distribute.has_strategy():
            # (a strategy's replicas synchronise their updates in merge calls, which it refuses inside a loop)
            for step in range(steps):
                d_loss, penalty = step_on(step)
            return d_loss, penalty

        # One traced step run in a graph loop, with the same numbers: unrolled, the five steps' double-backward
        # graphs made a d=8 WaveGAN's first step take 26 s to trace and optimise, against 7 s in the loop.
        def body(step, d_loss, penalty):
            return (step + 1, *(ops.cast(value, "float32") for value in step_on(step)))

        _, d_loss, penalty = tf.while_loop(lambda step, *_: step < steps, body,
                                           (tf.constant(0), tf.zeros(()), tf.zeros(())))
        return d_loss, penalty

    def train_step(self, data):
        real = data[0] if isinstance(data, tuple) else data
        ids = None
        if isinstance(real, dict):  # a class-conditional batch: {"waveform": slices, "class_id": ids}
            real, ids = real["waveform"], ops.cast(real["class_id"], "int32")
        real = ops.cast(real, "float32")
        steps = self.critic_steps if self.gan_loss == "wgan-gp" else 1
        batch = ops.shape(real)[0] // steps
        d_loss, penalty = self.critic_loop(real, ids, steps, batch)
        # The generator makes the classes of the last critic batch: the classes' frequencies in the data.
        g_loss = self.generator_step(batch, None if ids is None else ids[(steps - 1) * batch:steps * batch])
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.gp_tracker.update_state(penalty)
        return {metric.name: metric.result() for metric in self.metrics}


def critic_steps(loss):
    """Discriminator steps per generator step: 5 for `"wgan-gp"` (as in WaveGAN), 1 for `"bce"`."""
    return 5 if loss == "wgan-gp" else 1


def build_wavegan(latent_dim=100, model_dim=64, slice_length=16384, sample_rate=16000, phase_shuffle=2,
                  loss="wgan-gp", learning_rate=1e-4, generator=None, discriminator=None, class_names=(),
                  class_channels=16, pack=1):
    """A compiled `WaveGAN`, around given (e.g. restored) networks or fresh ones.

    Both networks get Adam with beta 0.5, 0.9, as in WaveGAN.

    Args:
        latent_dim: size of z.
        model_dim: width multiplier of both networks.
        slice_length: samples per clip; one of 4096, 8192, 16384, 32768, 65536.
        sample_rate: the audio's rate, saved with the networks.
        phase_shuffle: phase-shuffle radius in the discriminator (0: off).
        loss: `"wgan-gp"` or `"bce"`.
        learning_rate: Adam learning rate of both networks.
        generator: an existing generator to train instead of a fresh one.
        discriminator: an existing discriminator to train instead of a fresh one.
        class_names: classes of a class-conditional GAN (empty: unconditional).
        class_channels: size of each class's vector in the generator.
        pack: clips the discriminator scores together (PacGAN; 1: each alone), for a fresh discriminator.

    Example:

    >>> gan = build_wavegan(model_dim=4, slice_length=4096)
    >>> gan.fit(slices, epochs=10)  # slices: batches of critic_steps("wgan-gp") x batch_size real clips
    """
    generator = generator or build_generator(latent_dim, model_dim, slice_length, sample_rate,
                                             class_names=class_names, class_channels=class_channels)
    discriminator = discriminator or build_discriminator(model_dim, slice_length, phase_shuffle, sample_rate,
                                                         class_names=class_names, pack=pack)
    gan = WaveGAN(generator, discriminator, latent_dim=latent_dim, loss=loss, critic_steps=critic_steps(loss))
    adam = dict(learning_rate=learning_rate, beta_1=0.5, beta_2=0.9)
    gan.compile(d_optimizer=keras.optimizers.Adam(**adam), g_optimizer=keras.optimizers.Adam(**adam))
    return gan


def is_gan_generator(model):
    """Whether `model` is a WaveGAN generator: a latent vector in, audio (with its sample rate) out."""
    return len(model.inputs[0].shape) == 2 and "audio" in {layer.name for layer in model.layers}


def gan_class_names(generator):
    """The classes of a WaveGAN generator, in id order; empty for an unconditional one."""
    for layer in generator.layers:
        if layer.name == "class_embedding":
            return tuple(layer.class_names)
    return ()


def generate_clips(generator, num_clips, seed=None, batch_size=16, classes=None):
    """Draws `num_clips` latent vectors (uniform in [-1, 1], seeded) and returns `(num_clips, slice_length)` audio.

    `num_clips=0` gives an empty `(0, slice_length)` array; a negative or fractional count is a `ValueError`.
    A class-conditional generator needs `classes`: names or ids, one per clip (or one for all).

    Example:

    >>> generator = keras.saving.load_model("runs/gan-.../generator.keras")
    >>> clips = generate_clips(generator, 8, seed=1)
    """
    if isinstance(num_clips, bool) or int(num_clips) != num_clips or num_clips < 0:
        raise ValueError(f"num_clips must be a whole number >= 0, got {num_clips!r}")
    num_clips = int(num_clips)
    names = gan_class_names(generator)
    ids = None
    if names:
        if classes is None:
            raise ValueError(f"the generator is conditioned on classes: give one of {', '.join(names)}")
        given = list(classes) if isinstance(classes, (list, tuple, np.ndarray)) else [classes]
        given = given * num_clips if len(given) == 1 else given
        if len(given) != num_clips:
            raise ValueError(f"classes: one per clip ({num_clips}) or one for all, got {len(given)}")
        ids = class_ids(names, given)[:, None]
    elif classes is not None:
        raise ValueError("the generator is not conditioned on classes (trained without them)")
    latent_dim = generator.inputs[0].shape[-1]
    if num_clips == 0:
        return np.zeros((0, generator.output_shape[1]), np.float32)
    z = np.random.default_rng(seed).uniform(-1.0, 1.0, (num_clips, latent_dim)).astype(np.float32)
    return np.asarray(generator.predict(z if ids is None else [z, ids], batch_size=batch_size, verbose=0))[..., 0]
