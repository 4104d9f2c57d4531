"""Underfitting or overfitting? A trained WaveNet scored on its own training audio and on held-out audio.

    python bench/fit_gap.py runs/bench-recipe/00/model.keras     # train.wav and validate.wav of ../shared
    python bench/fit_gap.py MODEL --train a.wav --validate b.wav

Prints, in bits per sample over the 256 mu-law bins, each scored on the whole of the training file and of the
held-out file: the model (as `evaluate.py` scores it), a 32-coefficient linear predictor fitted on the training
file (too small to learn one file by heart, so the difference of its two scores is how much harder one file is than
the other), and each file's unigram entropy of its own mu-law codes. If the model scores above a goal on its own
training audio, and the held-out file is no easier (the predictor's row), the model underfits: no regulariser or
more varied data closes that part of the gap, only a model that fits the training audio better. Scoring takes about
as long as `evaluate.py` on both files; the machine is printed first.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # bench/machine.py, bench/wavenet_quality.py

from cli import ArgumentParser  # noqa: E402
from machine import caption, print_machine, quiet_tensorflow  # noqa: E402
from wavenet_quality import SPEECH, lpc_bits, unigram_entropy  # noqa: E402

import numpy as np  # noqa: E402

from data.mulaw import mu_law_encode  # noqa: E402


def main():
    parser = ArgumentParser(prog="bench/fit_gap.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a trained, unconditioned WaveNet's .keras file")
    parser.add_argument("--train", default=str(SPEECH / "train.wav"), help="the audio file it trained on")
    parser.add_argument("--validate", default=str(SPEECH / "validate.wav"), help="a held-out audio file")
    args = parser.parse_args()
    for flag, path in (("--train", args.train), ("--validate", args.validate)):
        if not Path(path).is_file():
            parser.error(f"{flag} {path}: not a file (one audio file each)")
    # A run without --validate held out the end of its training audio: part of --train would be held-out audio.
    config = Path(args.model).parent / "config.json"
    if config.is_file() and not json.loads(config.read_text()).get("validate", True):
        parser.error(f"{args.model}: its run validated on part of its training audio; give a model trained "
                     "with --validate")
    quiet_tensorflow()
    import models
    from data.audio import AudioError, load_audio
    from evaluation import signal_bits

    try:
        model = models.load_model(args.model)
    except models.ModelFileError as error:
        parser.error(str(error))
    try:
        spec = models.wavenet_spec(model)
    except ValueError as error:  # a GAN's generator, a vocoder, a token model
        parser.error(f"{args.model}: {error}")
    if spec.conditioned:
        parser.error(f"{args.model}: a conditioned model; this bench takes unconditioned ones")
    try:  # the linear predictor needs more samples than its 32 coefficients
        train, validate = (load_audio(path, spec.sample_rate, min_samples=64, too_short_for="the 32-coefficient "
                                      "predictor").signals[0] for path in (args.train, args.validate))
    except AudioError as error:
        parser.error(str(error))

    print_machine()
    names = Path(args.train).name, Path(args.validate).name

    def model_bits(signal):
        bits = signal_bits(model, spec, signal)
        if not np.all(np.isfinite(bits)):
            parser.error(f"{args.model}: the model gave a non-finite likelihood")
        return float(bits.mean())

    rows = []
    for label, score in (("the model", model_bits),
                         ("linear prediction (LPC-32 fitted on the training file), Laplace residual",
                          lambda signal: lpc_bits(train, signal)["laplace"]),
                         ("unigram entropy of the file's own mu-law codes",
                          lambda signal: unigram_entropy(mu_law_encode(signal[1:])))):
        scores = [score(train), score(validate)]
        print(f"{label}: {scores[0]:.3f} on {names[0]}, {scores[1]:.3f} on {names[1]}", flush=True)
        rows.append((label, *scores))
    print()
    print(caption())
    print(f"Model: {args.model}")
    print()
    print(f"| bits/sample | {names[0]} (trained on) | {names[1]} (held out) | held out minus trained on |")
    print("|---|---:|---:|---:|")
    for label, on_train, on_validate in rows:
        print(f"| {label} | {on_train:.3f} | {on_validate:.3f} | {on_validate - on_train:+.3f} |")


if __name__ == "__main__":
    main()
