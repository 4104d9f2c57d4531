"""Measure how well a trained WaveNet predicts held-out audio.

    python evaluate.py runs/wavenet-.../model.keras validate.wav [more files or folders ...]

Prints the negative log-likelihood of every sample (after the first of each file) given all samples before it,
in bits per sample over the 256 mu-law bins, per file and overall; the last line is `X.XXX bits/sample`.
A model that knows nothing scores 8.000; the regressor heads are reported on the same scale. `--json` prints
one JSON object instead, for scripts. Audio at another rate than the model's is resampled to it, with one note
per such file on stderr.

A conditioned WaveNet is scored with its conditioning (conditioned bits per sample): a vocoder (mel-conditioned)
on the log-mel spectrogram of each evaluated file itself, computed with the model's saved settings; a
class-conditioned model on the class given by --class NAME, required for one (one class for all the files).

    python evaluate.py runs/vocoder-.../model.keras held_out.wav
    python evaluate.py runs/speakers-.../model.keras alice_held_out.wav --class alice

    python evaluate.py runs/gan-.../generator.keras held_out.wav [--train train.wav] [--num 64]

For a GAN generator: Frechet distance of log-mel statistics, NDB (statistically different k-means bins) and the
median nearest-neighbour distance (memorisation) of generated clips, each against clips of the training audio,
next to the same measures for held-out real clips and for white noise.

    python evaluate.py runs/lm-.../lm.keras held_out.wav [--train train.wav]

For a token language model (train_lm.py): bits per token of the held-out audio's tokens (each given all the
tokens before it, as one pass of the model sees them: each attention layer looks --context tokens back), next to unigram, bigram and trigram models (interpolated Witten-Bell) of the
same tokens fitted on the training audio (--train; default: the files in the run's config.json); the last line is
`X.XXX bits/token`.
"""

import argparse
import json
import sys

import numpy as np

from cli import ArgumentParser, UsageError, positive_int, quiet_tensorflow, run


def build_parser():
    parser = ArgumentParser(prog="evaluate.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model.keras from train_wavenet.py, or generator.keras from train_gan.py")
    parser.add_argument("audio", nargs="+", help="held-out audio files or folders")
    parser.add_argument("--chunk", type=positive_int, default=16384,
                        help="samples scored per forward pass (default: 16384)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--class", dest="class_name", metavar="NAME",
                        help="class-conditioned WaveNet: score the audio as this class (required for one)")
    parser.add_argument("--train", help="GAN, token LM: the training audio; default: the files in the run's "
                                         "config.json")
    parser.add_argument("--num", type=positive_int, default=64, help="GAN: clips per set (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="GAN: seed for the clips (default: 0)")
    return parser


def note_resampled(corpus, sample_rate):
    """Prints one note on stderr for each file of `corpus` that was resampled to the model's rate: scores of
    resampled audio are not those of the recording itself."""
    import soundfile as sf

    for file in corpus.files:
        original = sf.info(str(file)).samplerate
        if original != sample_rate:
            print(f"note: {file} resampled from {original} Hz to {sample_rate} Hz, the model's rate", file=sys.stderr)


def evaluate_generator(generator, args):
    """Frechet distance, NDB and nearest-neighbour distance of generated, held-out real and noise clips."""
    import models
    from data.audio import load_audio
    from evaluation import compare, random_clips

    sample_rate = generator.get_layer("audio").sample_rate
    length = generator.output_shape[1]
    train = [s for path in training_paths(args, "generator") for s in load_audio(path, sample_rate).signals]
    held_out = []
    for path in args.audio:
        corpus = load_audio(path, sample_rate)
        note_resampled(corpus, sample_rate)
        held_out.extend(corpus.signals)
    rng = np.random.default_rng(args.seed)
    names = models.gan_class_names(generator)  # a class-conditional generator: its classes in turn, or --class
    classes = None if not names else [args.class_name or names[i % len(names)] for i in range(args.num)]
    sets = {"generated": models.generate_clips(generator, args.num, seed=args.seed, classes=classes),
            "held-out real": random_clips(held_out, length, args.num, seed=args.seed),
            "white noise": rng.uniform(-0.5, 0.5, (args.num, length)).astype(np.float32)}
    results = compare(sets, random_clips(train, length, max(4 * args.num, 100), seed=args.seed + 1), sample_rate,
                      seed=args.seed)
    if args.json:
        print(json.dumps({"model": args.model, "clips": args.num, "results": results}, indent=2))
        return results
    print(f"{args.num} clips of {length} samples at {sample_rate} Hz, each set compared with training clips")
    print(f"{'':16}{'Frechet (log-mel)':>20}{'NDB (10 bins)':>16}{'NN distance':>14}")
    for name, values in results.items():
        print(f"{name:16}{values['frechet_distance']:20.2f}{values['ndb']:16.2f}{values['nn_distance']:14.2f}")
    return results


def training_paths(args, what):
    """The training audio of `--train`, else the files named in the config.json beside the model."""
    from pathlib import Path

    if args.train is not None:
        return [args.train]
    config = Path(args.model).resolve().parent / "config.json"
    if not config.is_file():
        raise UsageError(f"give --train: the {what}'s run folder has no config.json naming its data")
    return json.loads(config.read_text())["train_files"]


def evaluate_lm(model, args):
    """Bits per token of the held-out audio's tokens under the LM and under n-gram models of the training tokens."""
    import models
    from data.audio import load_audio
    from evaluation import NGram, token_bits

    if args.class_name is not None:
        raise UsageError(f"--class: {args.model} is a token language model, which has no classes; leave --class out")
    spec = models.lm_spec(model)
    minimum = 2 * spec.mel.hop_length  # two frames: one token to predict the next from
    train = [models.tokenize(model, s) for path in training_paths(args, "language model")
             for s in load_audio(path, spec.sample_rate).signals]
    baselines = {name: NGram(order, spec.vocabulary).fit(train)
                 for name, order in (("unigram", 1), ("bigram", 2), ("trigram", 3))}
    files, totals, count = [], dict.fromkeys(["token LM", *baselines], 0.0), 0
    for path in args.audio:
        corpus = load_audio(path, spec.sample_rate, min_samples=minimum, too_short_for="two tokens (two frames)")
        note_resampled(corpus, spec.sample_rate)
        for file, signal in zip(corpus.files, corpus.signals):
            tokens = models.tokenize(model, signal)
            scores = {"token LM": token_bits(model, tokens),
                      **{name: baseline.bits(tokens) for name, baseline in baselines.items()}}
            files.append({"file": str(file), "tokens": len(tokens) - 1,
                          **{name: float(bits.mean()) for name, bits in scores.items()}})
            for name, bits in scores.items():
                totals[name] += float(bits.sum())
            count += len(tokens) - 1
    overall = {name: total / count for name, total in totals.items()}
    best = min(baselines, key=lambda name: overall[name])
    if args.json:
        print(json.dumps({"model": args.model, "vocabulary": spec.vocabulary, "context": spec.context,
                          "training_tokens": int(sum(len(t) for t in train)), "files": files, "tokens": count,
                          "bits_per_token": overall, "best_baseline": best}, indent=2))
        return overall
    seconds = count * spec.mel.hop_length / spec.sample_rate
    print(f"{count:,} held-out tokens ({seconds:.1f} s, {len(files)} file(s)); codebook of {spec.vocabulary}; "
          f"n-grams fitted on {sum(len(t) for t in train):,} training tokens")
    print(f"{'':28}{'bits/token':>12}")
    for name, value in overall.items():
        label = f"token LM (context {spec.context})" if name == "token LM" else name
        print(f"{label:28}{value:12.3f}")
    difference = overall[best] - overall["token LM"]
    print(f"the token LM is {abs(difference):.3f} bits/token {'below' if difference > 0 else 'above'} the best "
          f"n-gram ({best})")
    print(f"{overall['token LM']:.3f} bits/token")
    return overall


def check_class(args, spec):
    """Refuses --class for a model without classes, an unknown class, and a class-conditioned model without it."""
    known = ", ".join(spec.class_names)
    if not spec.class_names:
        if args.class_name is not None:
            raise UsageError(f"--class: {args.model} is not conditioned on classes (trained without them); "
                             "leave --class out")
    elif args.class_name is None:
        raise UsageError(f"{args.model} is conditioned on classes: give --class NAME (one of: {known}) to score "
                         "the audio as that class")
    else:
        import models

        try:
            models.class_ids(spec, [args.class_name])
        except ValueError as error:  # an unknown class: the message lists the model's classes
            raise UsageError(f"--class: {error}") from None


def main(argv=None):
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    import models
    from data.audio import AudioError, load_audio
    from evaluation import signal_bits

    try:
        model = models.load_model(args.model)
    except models.ModelFileError as error:
        raise UsageError(str(error)) from None
    if models.is_gan_generator(model):
        names = models.gan_class_names(model)
        if args.class_name is not None and args.class_name not in names:
            raise UsageError(f"--class {args.class_name}: " + (f"the generator's classes are {', '.join(names)}" if names
                             else "applies to class-conditioned models, not to this GAN generator"))
        return evaluate_generator(model, args)
    if models.is_token_lm(model):
        return evaluate_lm(model, args)
    if models.is_gan_vocoder(model):
        raise UsageError(f"{args.model}: a GAN vocoder; score it with bench/vocoder.py (it has no likelihood)")
    try:
        spec = models.wavenet_spec(model)
    except ValueError as error:
        raise UsageError(f"{args.model}: {error}") from None
    check_class(args, spec)
    results, total_bits, total_count = [], 0.0, 0
    for path in args.audio:
        corpus = load_audio(path, spec.sample_rate, min_samples=2)
        note_resampled(corpus, spec.sample_rate)
        for file, signal in zip(corpus.files, corpus.signals):
            bits = signal_bits(model, spec, signal, args.chunk, class_id=args.class_name)
            if not np.all(np.isfinite(bits)):
                raise AudioError(f"{file}: the model gave a non-finite likelihood")
            results.append({"file": str(file), "samples": int(bits.size), "bits_per_sample": float(bits.mean())})
            total_bits += float(bits.sum())
            total_count += bits.size
    overall = total_bits / total_count
    if args.json:
        print(json.dumps({"model": args.model, "head": spec.head, "distribution": spec.distribution,
                          "sample_rate": spec.sample_rate, "class": args.class_name,
                          "mel": spec.mel.to_dict() if spec.mel is not None else None, "files": results,
                          "samples": total_count, "bits_per_sample": overall}, indent=2))
    else:
        conditions = ([f"class {args.class_name}"] if args.class_name is not None else []) + (
            ["each file's own log-mel spectrogram"] if spec.mel is not None else [])
        if conditions:
            print(f"conditioned on {' and '.join(conditions)}")
        for result in results:
            print(f"{result['file']}: {result['bits_per_sample']:.3f} bits/sample over {result['samples']} samples")
        print(f"{overall:.3f} bits/sample")
    return overall


if __name__ == "__main__":
    run(main, "evaluate.py")
