"""Does a small WaveGAN learn a simple distribution? Tones of random pitch, scored as it trains.

    python bench/gan_tones.py                                   # WGAN-GP, learning rate 1e-3, 500 steps
    python bench/gan_tones.py --learning-rate 1e-4 --steps 800  # WaveGAN's published rate (what learned nothing)
    python bench/gan_tones.py --loss bce                        # cross-entropy, one critic step

Trains `models.build_wavegan` (d = 16, 4096-sample slices, batch 32 at 16 kHz by default) on 200 one-second tones
whose pitches are log-uniform in 220-1760 Hz, and every 100 steps draws 64 clips and prints:
- the peak share: the fraction of a clip's energy within 3 FFT bins of its spectral peak (a pure tone: 1.0; the
  training clips score 1.00; white noise about 0.003), averaged over the clips;
- the pitch spread: the standard deviation, in octaves, of the clips' peak frequencies (the training pitches:
  0.85 for the first 64 of this draw; a generator that makes one pitch: 0);
- the critic's loss, the generator's, and the mean peak amplitude of the clips (the tones': 0.5).
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
    """`(peak share, pitch spread in octaves)` of `(n, length)` clips (see the module docstring)."""
    import numpy as np

    length = clips.shape[1]
    power = np.abs(np.fft.rfft(clips * np.hanning(length), axis=1)) ** 2
    peak = power.argmax(axis=1)
    near = np.abs(np.arange(power.shape[1])[None, :] - peak[:, None]) <= 3
    share = (power * near).sum(axis=1) / np.maximum(power.sum(axis=1), 1e-20)
    frequencies = np.fft.rfftfreq(length, 1 / rate)[peak]
    return float(share.mean()), float(np.std(np.log2(np.maximum(frequencies, 1.0))))


def main():
    parser = argparse.ArgumentParser(prog="bench/gan_tones.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loss", choices=("wgan-gp", "bce"), default="wgan-gp")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--model-dim", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rate", type=int, default=16000)
    args = parser.parse_args()
    print_machine()
    quiet_tensorflow()
    import keras
    import numpy as np

    import models
    from data.frames import FrameGenerator

    rng = np.random.default_rng(0)
    t = np.arange(args.rate) / args.rate
    tones = [(0.5 * np.sin(2 * np.pi * np.exp(rng.uniform(np.log(220), np.log(1760))) * t + rng.uniform(0, 2 * np.pi)))
             .astype(np.float32) for _ in range(200)]
    keras.utils.set_random_seed(0)
    gan = models.build_wavegan(100, args.model_dim, 4096, args.rate, 2, args.loss, args.learning_rate)
    critic = models.critic_steps(args.loss)
    frames = FrameGenerator(tones, 4096, args.batch_size * critic, 100, mode="slice", seed=0,
                            epochs=max(1, args.steps // 100))
    real_share, real_spread = tone_scores(np.stack([tone[:4096] for tone in tones[:64]]), args.rate)
    print(f"WaveGAN d={args.model_dim}, 4096 samples at {args.rate} Hz, batch {args.batch_size}, {args.loss}, "
          f"Adam {args.learning_rate:g} (0.5, 0.9); training tones: peak share {real_share:.2f}, "
          f"pitch spread {real_spread:.2f} octaves")
    print("| steps | seconds | critic loss | generator loss | peak share | pitch spread (octaves) | peak amplitude |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    start = time.perf_counter()
    for epoch in range(max(1, args.steps // 100)):
        frames.position = epoch * 100
        history = gan.fit(frames, epochs=1, steps_per_epoch=100, verbose=0, shuffle=False).history
        clips = models.generate_clips(gan.generator, 64, seed=1)
        share, spread = tone_scores(clips, args.rate)
        print(f"| {(epoch + 1) * 100} | {time.perf_counter() - start:.0f} | {history['d_loss'][-1]:.2f} | "
              f"{history['g_loss'][-1]:.2f} | {share:.3f} | {spread:.2f} | {np.abs(clips).max(axis=1).mean():.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
