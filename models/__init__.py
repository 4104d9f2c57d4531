"""WaveNet and GAN models for raw audio.

Importing this package registers every custom layer, loss and metric, so a saved `.keras` file loads with
`keras.saving.load_model(path)`, safe mode on and no `custom_objects`.
"""

from models.distributions import BitsPerSample, DiscretizedLogisticMixtureLoss, bits_per_sample, loss_for
from models.generation import IncrementalWaveNet, generate, generate_chunks, generate_naive
from models.layers import AudioInput, GatedActivation, OutputDistribution
from models.wavenet import (WaveNetSpec, build_wavenet, distribution_for, receptive_field, wavenet_spec)
