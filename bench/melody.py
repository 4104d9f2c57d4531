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


def train_lm(audio, steps):
    import keras

    import models
    from data.features import log_mel, mel_settings
    from data.frames import FrameGenerator
    from data.tokens import encode_frames, fit_codebook

    settings = mel_settings(RATE)
    frames = log_mel(audio, settings)
    codebook = fit_codebook(frames, 16, seed=0)
    lm = models.build_token_lm(settings, 16, 256, model_dim=32, layers=2, heads=2, dropout=0.0)
    models.set_codebook(lm, codebook)
    lm.compile(optimizer=keras.optimizers.Adam(3e-3, clipnorm=1.0),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    tokens = encode_frames(frames, *codebook)
    lm.fit(FrameGenerator([tokens], 256, 8, steps, mode="tokens", seed=0).as_dataset(), steps_per_epoch=steps,
           epochs=1, shuffle=False, verbose=0)
    return lm


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
    from evaluation.melody import melody, notes_matched

    keras.utils.set_random_seed(0)
    audio, prime = melody(40.0, RATE), melody(3.0, RATE)
    rows = []
    start = time.perf_counter()
    lm = train_lm(audio, args.lm_steps)
    lm_seconds = time.perf_counter() - start
    settings = models.lm_spec(lm).mel
    scores = []
    for seed in SEEDS:
        tokens = models.generate_tokens(lm, 4 * 80 + 1, prime=models.tokenize(lm, prime), temperature=0.7, seed=seed)
        rendered = models.render_frames(models.detokenize(lm, tokens), settings, seed=seed)[0]
        # Frame 241 (the first generated) is centred on 3.0125 s: note 12 began 12.5 ms before the rendering.
        scores.append(notes_matched(rendered, RATE, first_note=12, count=16, offset=-0.0125))
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
