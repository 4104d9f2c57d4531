"""Measure how well a trained WaveNet predicts held-out audio.

    python evaluate.py runs/wavenet-.../model.keras validate.wav [more files or folders ...]

Prints the negative log-likelihood of every sample (after the first of each file) given all samples before it,
in bits per sample over the 256 mu-law bins, per file and overall; the last line is `X.XXX bits/sample`.
A model that knows nothing scores 8.000; the regressor heads are reported on the same scale. `--json` prints
one JSON object instead, for scripts.
"""

import argparse
import json

import numpy as np

from cli import ArgumentParser, UsageError, positive_int, quiet_tensorflow, run


def build_parser():
    parser = ArgumentParser(prog="evaluate.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a .keras model written by train_wavenet.py")
    parser.add_argument("audio", nargs="+", help="held-out audio files or folders")
    parser.add_argument("--chunk", type=positive_int, default=16384,
                        help="samples scored per forward pass (default: 16384)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def signal_bits(model, spec, signal, chunk):
    """Bits of each sample of `signal` after the first, given its past; one forward pass per `chunk` targets."""
    import models
    from data.mulaw import mu_law_encode, mu_law_round_trip

    inputs = mu_law_round_trip(signal[:-1], spec.num_classes)
    targets = signal[1:]
    context = spec.receptive_field - 1
    bits = []
    for start in range(0, len(targets), chunk):
        stop = min(start + chunk, len(targets))
        left = max(0, start - context)
        params = model.predict_on_batch(inputs[None, left:stop, None])[:, start - left:]
        if spec.distribution == "categorical":
            y_true = mu_law_encode(targets[start:stop], spec.num_classes)[None]
        else:
            y_true = targets[None, start:stop, None]
        bits.append(np.asarray(models.bits_per_sample(spec.distribution, y_true, params, spec.num_classes))[0])
    return np.concatenate(bits)


def main(argv=None):
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    from data.audio import AudioError, load_audio
    from generate import load_model

    model = load_model(args.model)
    import models

    try:
        spec = models.wavenet_spec(model)
    except ValueError as error:
        raise UsageError(f"{args.model}: {error}") from None
    results, total_bits, total_count = [], 0.0, 0
    for path in args.audio:
        corpus = load_audio(path, spec.sample_rate, min_samples=2)
        for file, signal in zip(corpus.files, corpus.signals):
            bits = signal_bits(model, spec, signal, args.chunk)
            if not np.all(np.isfinite(bits)):
                raise AudioError(f"{file}: the model gave a non-finite likelihood")
            results.append({"file": str(file), "samples": int(bits.size), "bits_per_sample": float(bits.mean())})
            total_bits += float(bits.sum())
            total_count += bits.size
    overall = total_bits / total_count
    if args.json:
        print(json.dumps({"model": args.model, "head": spec.head, "distribution": spec.distribution,
                          "sample_rate": spec.sample_rate, "files": results, "samples": total_count,
                          "bits_per_sample": overall}, indent=2))
    else:
        for result in results:
            print(f"{result['file']}: {result['bits_per_sample']:.3f} bits/sample over {result['samples']} samples")
        print(f"{overall:.3f} bits/sample")
    return overall


if __name__ == "__main__":
    run(main, "evaluate.py")
