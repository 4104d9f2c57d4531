"""WaveNet and GAN models for raw audio.

Importing this package registers every custom layer, loss and metric, so a saved `.keras` file loads with
`keras.saving.load_model(path)`, safe mode on and no `custom_objects`.
"""

from models.distributions import BitsPerSample, DiscretizedLogisticMixtureLoss, bits_per_sample, loss_for
from models.gan import (PhaseShuffle, WaveGAN, build_discriminator, build_generator, build_wavegan, critic_steps,
                        gan_class_names, generate_clips, is_gan_generator)
from models.gan_vocoder import (PeriodFold, TrimEdges, VocoderGAN, build_vocoder_discriminator,
                                build_vocoder_gan, build_vocoder_generator, is_gan_vocoder, stft_loss,
                                upsample_factors, vocode, vocoder_settings, vocoder_spec)
from models.generation import (ENGINES, IncrementalWaveNet, PackedWeights, StreamState, class_ids, generate,
                               generate_chunks, generate_naive, pack_weights)
from models.layers import (AudioInput, CausalConv1D, ClassEmbedding, CropToLength, GatedActivation, MelFeatures,
                           FrameUpsampler, OutputDistribution)
from models.lm import (CachedTokenLM, LMSpec, MelCodebook, RotaryCausalAttention, TokenInput, build_token_lm,
                       check_vocoder, codebook_of, detokenize, generate_tokens, is_token_lm, lm_spec, render_frames,
                       set_codebook, tokenize)
from models.loading import ModelFileError, load_model
from models.optimizers import AveragedAdam, averaged_weights
from models.wavenet import (Block, WaveNetSpec, build_from_spec, build_wavenet, distribution_for, receptive_field,
                            wavenet_spec)

__all__ = ["CachedTokenLM", "LMSpec", "MelCodebook", "RotaryCausalAttention", "TokenInput", "build_token_lm",
           "check_vocoder", "codebook_of", "detokenize", "generate_tokens", "is_token_lm", "lm_spec", "render_frames",
           "set_codebook", "tokenize", "class_ids",
           "PeriodFold", "TrimEdges", "VocoderGAN", "build_vocoder_discriminator", "build_vocoder_gan",
           "build_vocoder_generator", "gan_class_names", "is_gan_vocoder", "stft_loss", "upsample_factors", "vocode",
           "vocoder_settings", "vocoder_spec", "AveragedAdam", "averaged_weights", "AudioInput", "BitsPerSample", "Block", "CausalConv1D", "ClassEmbedding", "CropToLength", "DiscretizedLogisticMixtureLoss", "ENGINES", "FrameUpsampler",
           "GatedActivation", "IncrementalWaveNet", "MelFeatures", "ModelFileError", "OutputDistribution", "PackedWeights",
           "PhaseShuffle", "StreamState", "WaveGAN", "WaveNetSpec", "bits_per_sample", "build_discriminator",
           "build_from_spec", "build_generator", "build_wavegan", "build_wavenet", "critic_steps",
           "distribution_for", "generate", "generate_chunks", "generate_clips", "generate_naive", "is_gan_generator",
           "load_model", "loss_for", "pack_weights", "receptive_field", "wavenet_spec"]
