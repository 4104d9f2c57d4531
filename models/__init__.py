"""WaveNet and GAN models for raw audio.

Importing this package registers every custom layer, loss and metric, so a saved `.keras` file loads with
`keras.saving.load_model(path)`, safe mode on and no `custom_objects`.
"""

from models.distributions import BitsPerSample, DiscretizedLogisticMixtureLoss, bits_per_sample, loss_for
from models.gan import PhaseShuffle, WaveGAN, build_discriminator, build_generator, generate_clips
from models.generation import IncrementalWaveNet, generate, generate_chunks, generate_naive
from models.layers import AudioInput, CausalConv1D, GatedActivation, OutputDistribution
from models.wavenet import WaveNetSpec, build_wavenet, distribution_for, receptive_field, wavenet_spec

__all__ = ["AudioInput", "BitsPerSample", "CausalConv1D", "DiscretizedLogisticMixtureLoss", "GatedActivation", "IncrementalWaveNet",
           "OutputDistribution", "PhaseShuffle", "WaveGAN", "WaveNetSpec", "bits_per_sample", "build_discriminator",
           "build_generator", "build_wavenet", "distribution_for", "generate", "generate_chunks", "generate_clips",
           "generate_naive", "loss_for", "receptive_field", "wavenet_spec"]
