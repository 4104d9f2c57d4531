"""WaveNet and GAN models for raw audio.

Importing this package registers every custom layer, loss and metric, so a saved `.keras` file loads with
`keras.saving.load_model(path)`, safe mode on and no `custom_objects`.
"""

import os

# TensorFlow's default CPU allocator passes every tensor to malloc, which maps fresh pages for each large one
# and unmaps them when it is freed: a training step spent as much time in page faults as in products. The
# BFC allocator keeps its regions and reuses them. TensorFlow reads this when it first allocates on the CPU,
# so it holds for every model of a process that imports this package first; a value already set is kept.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "1")


from data.features import ISTFT_LAYOUTS  # the istft generator's layouts, a rule the trainer reads too
from models.distributions import BitsPerSample, DiscretizedLogisticMixtureLoss, bits_per_sample, loss_for
from models.gan import (PhaseShuffle, WaveGAN, build_discriminator, build_generator, build_wavegan, critic_steps,
                        gan_class_names, generate_clips, is_gan_generator)
from models.gan_vocoder import (GENERATORS, PHASE_HEADS, GriffinLimPhases, InverseSTFT, LayerScale,
                                MelProjection, ParallelPhase, PeriodFold, TrimEdges, VocoderGAN, build_istft_generator,
                                build_vocoder_discriminator, build_vocoder_gan, build_vocoder_generator,
                                is_gan_vocoder, phase_loss, spectrum_model, stft_loss, upsample_factors, vocode,
                                vocoder_settings, vocoder_spec)
from models.generation import (ENGINES, IncrementalWaveNet, PackedWeights, StreamState, class_ids, generate,
                               generate_chunks, generate_naive, pack_weights)
from models.layers import (AudioInput, CausalConv1D, ClassEmbedding, CropToLength, GatedActivation, MelFeatures,
                           FrameUpsampler, MuLawEmbedding, OutputDistribution)
from models.lm import (CachedTokenLM, LMSpec, MelCodebook, RotaryCausalAttention, TokenInput, build_token_lm,
                       check_vocoder, codebook_of, detokenize, generate_tokens, is_token_lm, lm_spec, render_frames,
                       set_codebook, tokenize)
from models.loading import ModelFileError, load_model
from models.optimizers import AveragedAdam, averaged_weights
from models.wavenet import (Block, WaveNetSpec, build_from_spec, build_wavenet, distribution_for, receptive_field,
                            wavenet_spec)

__all__ = ["AudioInput", "averaged_weights", "AveragedAdam", "bits_per_sample", "BitsPerSample", "Block",
           "build_discriminator", "build_from_spec", "build_generator", "build_istft_generator", "build_token_lm",
           "build_vocoder_discriminator", "build_vocoder_gan", "build_vocoder_generator", "build_wavegan",
           "build_wavenet", "CachedTokenLM", "CausalConv1D", "check_vocoder", "class_ids", "ClassEmbedding",
           "codebook_of", "critic_steps", "CropToLength", "detokenize", "DiscretizedLogisticMixtureLoss",
           "distribution_for", "ENGINES", "FrameUpsampler", "gan_class_names", "GatedActivation", "generate",
           "generate_chunks", "generate_clips", "generate_naive", "generate_tokens", "GENERATORS", "GriffinLimPhases",
           "IncrementalWaveNet", "InverseSTFT", "is_gan_generator", "ISTFT_LAYOUTS", "is_gan_vocoder", "is_token_lm",
           "LayerScale", "lm_spec", "LMSpec", "load_model", "loss_for",
           "MelCodebook", "MelFeatures", "MelProjection", "ModelFileError", "MuLawEmbedding", "OutputDistribution",
           "pack_weights", "PackedWeights", "ParallelPhase", "PeriodFold", "PHASE_HEADS", "phase_loss", "PhaseShuffle",
           "receptive_field", "render_frames", "RotaryCausalAttention", "set_codebook", "spectrum_model",
           "stft_loss", "StreamState", "TokenInput", "tokenize",
           "TrimEdges", "upsample_factors", "vocode", "vocoder_settings", "vocoder_spec", "VocoderGAN", "WaveGAN",
           "wavenet_spec", "WaveNetSpec"]
