"""Does a small WaveGAN learn a simple distribution? Tones of random pitch, scored as it trains.

    python bench/gan_tones.py                                   # WGAN-GP, learning rate 1e-3, 500 steps
    python bench/gan_tones.py --learning-rate 1e-4 --steps 800  # WaveGAN's published rate (what learned nothing)
    python bench/gan_tones.py --loss bce                        # cross-entropy, one critic step
    python bench/gan_tones.py --pack 2                          # the discriminator scores pairs of clips (PacGAN)
    python bench/gan_tones.py --pitches 300,600,1200 --rate 8000 --model-dim 8 --latent-dim 16 --batch-size 4 \
        --steps 300 --every 150 --pack 2 --seeds 0,1,2,3,4,5   # the recipe of tests/test_gan.py, seed by seed

Trains `models.build_wavegan` (d = 16, 4096-sample slices, batch 32 at 16 kHz by default) on 200 one-second tones
whose pitches are log-uniform in 220-1760 Hz (or, with `--pitches`, one 2-second tone of each pitch given), and
every 100 steps (`--every`) draws 64 clips and prints:
- the peak share: the fraction of a clip's energy within 3 FFT bins of its spectral peak (a pure tone: 1.0; the
  training clips score 1.00; white noise about 0.003), averaged over the clips;
- the pitch spread: the standard deviation, in octaves, of the clips' peak frequencies (the training pitches:
  0.85 for the first 64 of this draw; a generator that makes one pitch: 0);
- the critic's loss, the generator's, and the mean peak amplitude of the clips (the tones': 0.5);
- with `--pitches`, the clips on each pitch (peak within 6% of it, as tests/test_gan.py counts them).
The machine line (bench/machine.py) comes first: the steps/s depend on the CPU.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import print_machine, quiet_tensorflow  # noqa: E402


def tone_scores(clips, rate):
    """`(peak share, pitch spread in octaves, peak frequencies in Hz)` of `(n, length)` clips (module docstring)."""
    import numpy as np

    length = clips.shape[1]
    power = np.abs(np.fft.rfft(clips * np.hanning(length), axis=1)) ** 2
    peak = power.argmax(axis=1)
    near = np.abs(np.arange(power.shape[1])[None, :] - peak[:, None]) <= 3
    share = (power * near).sum(axis=1) / np.maximum(power.sum(axis=1), 1e-20)
    frequencies = np.fft.rfftfreq(length, 1 / rate)[peak]
    return float(share.mean()), float(np.std(np.log2(np.maximum(frequencies, 1.0)))), frequencies


def clips_per_pitch(peaks, pitches):
    """How many clips, given their peak frequencies, peak within 6% of each pitch (the nearest, on a log scale)."""
    import numpy as np

    pitches = np.asarray(pitches, np.float64)
    nearest = np.argmin(np.abs(np.log(peaks[:, None] + 1) - np.log(pitches[None, :])), axis=1)
    on_pitch = np.abs(peaks - pitches[nearest]) <= 0.06 * pitches[nearest]
    return [int(np.sum(on_pitch & (nearest == index))) for index in range(len(pitches))]


def main():
    parser = argparse.ArgumentParser(prog="bench/gan_tones.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loss", choices=("wgan-gp", "bce"), default="wgan-gp")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--model-dim", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--latent-dim", type=int, default=100)
    parser.add_argument("--pack", type=int, default=1, help="clips the discriminator scores together")
    parser.add_argument("--pitches", type=lambda text: [float(value) for value in text.split(",")],
                        help="train on one tone of each of these pitches in Hz, comma-separated, instead")
    parser.add_argument("--every", type=int, default=100, help="steps between scores")
    parser.add_argument("--seeds", type=lambda text: [int(value) for value in text.split(",")], default=[0],
                        help="seeds of the networks' weights and the training draws, comma-separated: one run each")
    args = parser.parse_args()
    if args.pack < 1 or args.batch_size % args.pack:
        parser.error(f"--pack {args.pack}: give 1 or more, a divisor of --batch-size {args.batch_size}")
    print_machine()
    quiet_tensorflow()
    import keras
    import numpy as np

    import models
    from data.frames import FrameGenerator

    rng = np.random.default_rng(0)
    if args.pitches:
        t = np.arange(2 * args.rate) / args.rate
        tones = [(0.5 * np.sin(2 * np.pi * pitch * t)).astype(np.float32) for pitch in args.pitches]
    else:
        t = np.arange(args.rate) / args.rate
        tones = [(0.5 * np.sin(2 * np.pi * np.exp(rng.uniform(np.log(220), np.log(1760))) * t
                               + rng.uniform(0, 2 * np.pi))).astype(np.float32) for _ in range(200)]
    real_share, real_spread, _ = tone_scores(np.stack([tone[:4096] for tone in tones[:64]]), args.rate)
    critic, every = models.critic_steps(args.loss), max(1, args.every)
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        gan = models.build_wavegan(args.latent_dim, args.model_dim, 4096, args.rate, 2, args.loss, args.learning_rate,
                                   pack=args.pack)
        frames = FrameGenerator(tones, 4096, args.batch_size * critic, every, mode="slice", seed=seed,
                                epochs=max(1, args.steps // every))
        print(f"\nWaveGAN d={args.model_dim}, z {args.latent_dim}, 4096 samples at {args.rate} Hz, batch "
              f"{args.batch_size}, {args.loss}, Adam {args.learning_rate:g} (0.5, 0.9), pack {args.pack}, seed {seed}; "
              f"training tones: peak share {real_share:.2f}, pitch spread {real_spread:.2f} octaves")
        at = f" clips at {', '.join(f'{pitch:g}' for pitch in args.pitches)} Hz |" if args.pitches else ""
        print("| steps | seconds | critic loss | generator loss | peak share | pitch spread (octaves) "
              "| peak amplitude |" + at)
        print("|---:|---:|---:|---:|---:|---:|---:|" + ("---|" if args.pitches else ""))
        start = time.perf_counter()
        for epoch in range(max(1, args.steps // every)):
            frames.position = epoch * every
            history = gan.fit(frames, epochs=1, steps_per_epoch=every, verbose=0, shuffle=False).history
            clips = models.generate_clips(gan.generator, 64, seed=1)
            share, spread, peaks = tone_scores(clips, args.rate)
            print(f"| {(epoch + 1) * every} | {time.perf_counter() - start:.0f} | {history['d_loss'][-1]:.2f} | "
                  f"{history['g_loss'][-1]:.2f} | {share:.3f} | {spread:.2f} | {np.abs(clips).max(axis=1).mean():.2f} |"
                  + (f" {', '.join(str(count) for count in clips_per_pitch(peaks, args.pitches))} |"
                     if args.pitches else ""), flush=True)


if __name__ == "__main__":
    main()
