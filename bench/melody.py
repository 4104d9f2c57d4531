"""What the token language model adds: a melody that repeats every 2 s, continued by it and by a WaveNet.

    python bench/melody.py                     # about five minutes on 2 cores
    python bench/melody.py --wavenet-steps 3000

Both models train on 40 s of the melody of evaluation/melody.py (eight notes of 0.25 s at 8 kHz), are primed with
its first 3 s, and generate 4 s (16 notes) three times (seeds 0, 1, 2). A note counts when its pitch is within
half a semitone of the melody's next note. The token LM is the tiny one of tests/test_lm.py's learning test
(16 codebook entries, 2 blocks of 32, context 256 tokens = 3.2 s; 400 steps); the WaveNet has the default
shape of train_wavenet.py (2 stacks of 10 layers: a receptive field of 2047 samples, 0.26 s), trained for
--wavenet-steps steps of 4 windows of 4096 samples. Prints the machine line first (bench/machine.py), then one
table under its CPU caption.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # bench/machine.py

from cli import positive_int  # noqa: E402
from machine import caption, print_machine, quiet_tensorflow  # noqa: E402

RATE = 8000
SEEDS = (0, 1, 2)


def build_parser():
    parser = argparse.ArgumentParser(prog="bench/melody.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm-steps", type=positive_int, default=400, help="token LM training steps (default 400)")
    parser.add_argument("--wavenet-steps", type=positive_int, default=1000,
                        help="WaveNet training steps (default 1000)")
    return parser


def train_wavenet(audio, steps):
    import keras

    import models
    from data.frames import FrameGenerator

    net = models.build_wavenet("classifier", sample_rate=RATE)
    net.compile(optimizer=keras.optimizers.Adam(2e-3), loss=models.loss_for("categorical"))
    net.fit(FrameGenerator([audio], 4096, 4, steps, seed=0).as_dataset(), steps_per_epoch=steps, epochs=1,
            shuffle=False, verbose=0)
    return net


def main():
    args = build_parser().parse_args()
    print_machine()
    quiet_tensorflow()
    import keras
    import numpy as np

    import models
    from evaluation.melody import continuation_matched, melody, melody_lm, notes_matched, train_melody_lm

    keras.utils.set_random_seed(0)
    audio, prime = melody(40.0, RATE), melody(3.0, RATE)
    rows = []
    start = time.perf_counter()
    lm = train_melody_lm(*melody_lm(seed=0), args.lm_steps)
    lm_seconds = time.perf_counter() - start
    scores = [continuation_matched(lm, seed=seed) for seed in SEEDS]
    rows.append(("token LM (context 256 tokens = 3.2 s), temperature 0.7", lm.count_params(), args.lm_steps,
                 lm_seconds, scores))
    start = time.perf_counter()
    net = train_wavenet(audio, args.wavenet_steps)
    wavenet_seconds = time.perf_counter() - start
    scores = []
    for seed in SEEDS:
        generated = models.generate(net, 4 * RATE, prime=prime, temperature=1.0, seed=seed)[0]
        scores.append(notes_matched(generated, RATE, first_note=12, count=16))
    rows.append((f"WaveNet, 2 x 10 layers (receptive field {models.receptive_field(2, 10)} samples = "
                 f"{models.receptive_field(2, 10) / RATE:.2f} s), temperature 1", net.count_params(),
                 args.wavenet_steps, wavenet_seconds, scores))
    print(f"\n{caption()}")
    print("| continuing the melody for 4 s (16 notes) after a 3 s prime | parameters | training steps | "
          "training seconds | notes matched, seeds 0 / 1 / 2 |")
    print("|---|---:|---:|---:|---|")
    for label, parameters, steps, seconds, scores in rows:
        print(f"| {label} | {parameters:,} | {steps:,} | {seconds:.0f} | "
              f"{' / '.join(f'{int(round(16 * s))}' for s in scores)} of 16 |")
    print(f"\n(mean: token LM {np.mean(rows[0][4]):.0%}, WaveNet {np.mean(rows[1][4]):.0%})")


if __name__ == "__main__":
    main()
