"""The token language model's two costs: what tokens lose of the log-mel frames, and how fast tokens are made.

    python bench/lm.py                                  # codebooks fitted here; a default-size model for speed
    python bench/lm.py --model runs/lm-.../lm.keras --gan runs/gan-.../generator.keras

1. Tokens. k-means codebooks of several sizes (and a two-stage residual one) are fitted on the log-mel frames of
   the training audio, as train_lm.py fits its own; the held-out frames are tokenised and rebuilt from their
   entries. The table gives the mel distance (mean absolute difference of natural-log magnitudes, the measure of
   evaluation/vocoder.py) of the rebuilt frames, then of Griffin-Lim's (and each given vocoder's) rendering of
   the original frames and of the rebuilt ones: what the vocoder itself loses, beside what tokens add to it.
   With --model, its own codebook is one more row.
2. Generation speed. The cached decoder (models.CachedTokenLM) steps one token per stream with a full context in
   its cache (its slowest state): one stream on one core, one stream split across the cores (as the decoder
   chooses), and 8 streams in parallel; then models.generate_tokens with top-p sampling included. The uncached
   row runs the Keras model over the last context tokens for every token, as a model without a cache must.
   Real-time factor = seconds of audio (tokens x hop) made per second.

Prints the machine line first (bench/machine.py) and a "CPU: ..." caption above each table. `--quick` only
checks that it runs.
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

from cli import positive_float, positive_int  # noqa: E402
from machine import caption, print_machine, quiet_tensorflow  # noqa: E402

SPEECH = ROOT.parent / "shared" / "audio" / "speech"


def build_parser():
    parser = argparse.ArgumentParser(prog="bench/lm.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(SPEECH / "train.wav"), help="audio the codebooks are fitted on")
    parser.add_argument("--audio", default=str(SPEECH / "validate.wav"), help="held-out audio that is tokenised")
    parser.add_argument("--seconds", type=positive_float, default=60.0, help="seconds of held-out audio (default 60)")
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[64, 256, 1024],
                        help="codebook sizes (default: 64 256 1024)")
    parser.add_argument("--model", help="a trained token LM (lm.keras): its codebook, and its size for the speed")
    parser.add_argument("--gan", help="a GAN vocoder (generator.keras) to render frames with, beside Griffin-Lim")
    parser.add_argument("--wavenet", help="a WaveNet vocoder (model.keras) to render frames with")
    parser.add_argument("--tokens", type=positive_int, default=400, help="tokens timed per stream (default 400)")
    parser.add_argument("--speed-only", action="store_true", help="only the generation speed table")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: only check that it runs")
    return parser


def token_table(args, settings, vocoders, lm=None):
    import numpy as np

    import models
    from data.audio import load_audio
    from data.features import log_mel
    from data.tokens import decode_tokens, encode_frames, fit_codebook, residual_codebooks, residual_rebuild
    from evaluation import mel_distance
    from models.lm import render_frames

    train = np.concatenate([log_mel(s, settings) for s in load_audio(args.train, settings.sample_rate).signals])
    held_out = load_audio(args.audio, settings.sample_rate).signals[0][:int(args.seconds * settings.sample_rate)]
    frames = log_mel(held_out, settings)
    floor = settings.floor_value
    rows = [("original frames (no tokens)", frames, "-")]
    middle = args.sizes[len(args.sizes) // 2]
    for size in args.sizes:
        codebook = fit_codebook(train, size, seed=0)
        rows.append((f"k-means, {size} entries", decode_tokens(encode_frames(frames, *codebook), *codebook,
                                                                floor=floor), f"{np.log2(size):.0f}"))
        if size == middle:
            first = codebook
    first, stages = residual_codebooks(train, (middle, middle), seed=0, first=first)
    rows.append((f"residual k-means, 2 x {middle} entries", residual_rebuild(frames, first, stages, floor)[-1],
                 f"{2 * np.log2(middle):.0f}"))
    if lm is not None:
        rows.append((f"the model's codebook ({models.lm_spec(lm).vocabulary} entries)",
                     models.detokenize(lm, models.tokenize(lm, held_out)), f"{np.log2(models.lm_spec(lm).vocabulary):.0f}"))
    names = ["Griffin-Lim", *vocoders]
    print(f"\n{caption()}")
    print(f"| {len(frames)} frames of {args.audio} ({len(held_out) / settings.sample_rate:.1f} s) | bits/frame | "
          "mel distance of the frames | " + " | ".join(f"{name} rendering: mel distance" for name in names) + " |")
    print("|---|---:|---:|" + "---:|" * len(names))
    for label, rebuilt, bits in rows:
        distance = float(np.mean(np.abs(rebuilt - frames)))
        cells = []
        for name in names:  # scored against the frames rendered, and against the original ones
            audio = render_frames(rebuilt, settings, vocoders.get(name), seed=0)[0]
            cells.append(f"{mel_distance(audio, rebuilt, settings):.3f} (to the original: "
                         f"{mel_distance(audio, frames, settings):.3f})")
        cells = " | ".join(cells)
        print(f"| {label} | {bits} | {distance:.3f} | {cells} |", flush=True)


def speed_table(args, lm):
    import numpy as np

    import models

    spec = models.lm_spec(lm)
    seconds_per_token = spec.mel.hop_length / spec.sample_rate
    print(f"\n{caption()}")
    print(f"| token LM: {spec.layers} blocks of {spec.model_dim}, {spec.heads} heads, context {spec.context}, "
          f"{lm.count_params():,} parameters | streams | cores per stream | tokens/s per stream | tokens/s in all | "
          "x real time per stream |")
    print("|---|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    # One stream on one core, then as CachedTokenLM chooses (split across the cores), then 8 streams in parallel.
    for streams, split_cores in ((1, 1), (1, None), (8, None)):
        decoder = models.CachedTokenLM(lm, split_cores=split_cores)
        decoder.reset(streams)
        decoder.feed(rng.integers(0, spec.vocabulary, (streams, spec.context)))  # a full cache: the slowest state
        start = time.perf_counter()
        for _ in range(args.tokens):
            decoder.step(rng.integers(0, spec.vocabulary, streams))
        rate = args.tokens / (time.perf_counter() - start)
        cores = decoder.cores()
        decoder.close()
        print(f"| cached (models.CachedTokenLM) | {streams} | {cores} | {rate:,.0f} | {rate * streams:,.0f} | "
              f"{rate * seconds_per_token:.1f} |", flush=True)
    # Sampling too: the time from the first token drawn to the last (the prime's steps before it not counted).
    decoder = models.CachedTokenLM(lm)
    decoder.reset(1)
    marks = []
    models.generate_tokens(decoder, args.tokens, prime=rng.integers(0, spec.vocabulary, spec.context), seed=0,
                           temperature=0.9, top_p=0.95, progress=lambda done: marks.append(time.perf_counter()))
    rate = (len(marks) - 1) / (marks[-1] - marks[0])
    print(f"| models.generate_tokens, full cache, top-p 0.95 sampling included | 1 | {decoder.cores()} | "
          f"{rate:,.0f} | {rate:,.0f} | {rate * seconds_per_token:.1f} |", flush=True)
    window = rng.integers(0, spec.vocabulary, (1, spec.context)).astype(np.int32)
    lm(window)  # traced once
    count = max(3, args.tokens // 40)
    start = time.perf_counter()
    for _ in range(count):
        lm(window)
    rate = count / (time.perf_counter() - start)
    print(f"| uncached (the Keras model over the last {spec.context} tokens per token) | 1 | all | {rate:,.1f} | "
          f"{rate:,.1f} | {rate * seconds_per_token:.2f} |", flush=True)


def main():
    args = build_parser().parse_args()
    print_machine()
    quiet_tensorflow()
    import keras

    import models
    from data.features import mel_settings
    from data.tokens import Codebook

    keras.utils.set_random_seed(0)
    if args.quick:
        args.sizes, args.seconds, args.tokens = [8, 16], 2.0, 20
    vocoders = {}
    for name, path in (("GAN vocoder", args.gan), ("WaveNet vocoder", args.wavenet)):
        if path:
            vocoders[name] = models.load_model(path)
    if args.model:
        lm = models.load_model(args.model)
        settings = models.lm_spec(lm).mel
    else:
        import numpy as np

        settings = mel_settings(8000)
        size = (16, 32, 1, 2, 32) if args.quick else (256, 1024, 4, 4, 128)  # vocabulary, context, layers, ...
        lm = models.build_token_lm(settings, size[0], size[1], layers=size[2], heads=size[3], model_dim=size[4])
        rng = np.random.default_rng(0)
        models.set_codebook(lm, Codebook(np.zeros(settings.n_mels, np.float32), np.ones(settings.n_mels, np.float32),
                                         rng.normal(size=(size[0], settings.n_mels)).astype(np.float32)))
    if not args.speed_only:
        token_table(args, settings, vocoders, lm if args.model else None)
    speed_table(args, lm)


if __name__ == "__main__":
    main()
