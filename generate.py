"""Generate audio from a trained model.

    python generate.py runs/wavenet-.../model.keras --seconds 10 --output speech.wav
    python generate.py runs/wavenet-.../model.keras --num 8 --output-dir samples/   # 8 streams in one batch
    python generate.py runs/wavenet-.../model.keras --prime start.wav --seconds 5 --output continued.wav
    python generate.py runs/gan-.../generator.keras --num 8 --output-dir clips/ --seed 1   # GAN clips
    python generate.py runs/gan-.../generator.keras --class low --num 4 --output-dir clips/   # class-conditional
    python generate.py runs/gan-.../generator.keras --mel-from speech.wav --output resynth.wav   # GAN vocoder
    python generate.py runs/lm-.../lm.keras --seconds 10 --output out.wav      # token language model
    python generate.py runs/lm-.../lm.keras --prime start.wav --vocoder vocoder.keras --top-p 0.9 --output out.wav

Conditioned WaveNets (trained with classes and/or log-mel spectrograms):

    python generate.py model.keras --class alice --output alice.wav              # one class
    python generate.py model.keras --class alice --class bob --output-dir out/   # one file per --class
    python generate.py model.keras --num 6 --output-dir out/                     # cycles the model's classes
    python generate.py vocoder.keras --mel-from speech.wav --output resynth.wav  # log-mel of speech.wav
    python generate.py vocoder.keras --mel speech_mel.npz --output resynth.wav   # a saved log-mel
    python generate.py both.keras --class bob --mel-from alice.wav --output bob_says.wav

The sample rate is the one the model was trained at (saved in the model). A WaveGAN generator makes clips of its
fixed length: --seconds, --temperature, --prime, --mel and --mel-from apply to WaveNets only, and are refused for
it; --class picks the class of a class-conditional one (train_gan.py --labels), as for a WaveNet. A GAN vocoder
(train_gan.py --condition mel) takes --mel-from or --mel exactly as a WaveNet vocoder does, and renders the
spectrogram in one parallel pass, in chunks with overlap (memory stays flat, borders match one whole pass); it
draws nothing at random, so --temperature is refused for it. Audio is written as it is generated, so minutes of
it need no more memory than the file itself.

Classes (a model trained with classes): each --class NAME writes one file, generated together in one batch; with
several, give --output-dir (files sample_001_NAME.wav, ...). --num N with --class cycles the given classes over
the N files (--class a --class b --num 3: a, b, a); --num N without --class cycles the model's own classes, from
the first. A class-conditioned model given neither --class nor --num is refused (the message lists its classes),
as are an unknown class name and --class on a model without classes.

Spectrograms (a mel-conditioned model, a vocoder): --mel-from AUDIO computes the log-mel spectrogram of that audio
(read at the model's rate) with the settings saved in the model; --mel FILE reads one, (frames, n_mels) float32
natural-log magnitudes from .npy, or .npz with an array `mel` and optional settings (sample_rate, n_mels,
hop_length, ...) that must match the model's (data.features.save_mel writes that form). A 3-D spectrogram
(streams, frames, n_mels) gives one file per row. The spectrogram sets the length: F frames make (F - 1) x hop
samples, so --seconds is refused with one, and so is --prime. A vocoder given no spectrogram, a spectrogram on a
model without mel conditioning, and a spectrogram of the wrong bin count or settings are refused. Classes and a
spectrogram combine (a voice from one class saying what the spectrogram says). Every refusal is one line, exit
status 2, before anything is written.

Token language models (train_lm.py): --seconds of tokens (one per log-mel frame) are sampled with cached decoding
(--temperature, --top-k, --top-p), continuing the tokens of --prime when given (else starting from silence); the
codebook inside the model turns them into log-mel frames, which --vocoder renders (a WaveNet vocoder of
train_wavenet.py --condition mel, or a GAN vocoder of train_gan.py --condition mel, with the LM's mel settings)
or, without one, librosa's Griffin-Lim. --num N writes N independent streams. The output is the continuation,
without the prime. --top-k, --top-p and --vocoder apply to token language models only.
"""

import argparse
import re
import time
from pathlib import Path

from cli import (ArgumentParser, UsageError, non_negative_float, non_negative_int, positive_float, positive_int,
                 quiet_tensorflow, run, sigterm_interrupts)

DEFAULT_SECONDS = 5.0
DEFAULT_TEMPERATURE = 1.0
# A vocoder's default: the temperature bench/vocoder.py measured best by mel distance for the default vocoder
# after 30 minutes of training (README, "Vocoder against Griffin-Lim"): lower leaves less sampling noise in
# silence and between harmonics.
DEFAULT_VOCODER_TEMPERATURE = 0.7
# A WAV's sizes are 32-bit fields: a 16-bit mono file holds at most this many samples (4 GiB less its header).
WAV_MAX_SAMPLES = (2 ** 32 - 1 - 44) // 2


def build_parser():
    parser = ArgumentParser(prog="generate.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model.keras from train_wavenet.py, or generator.keras from train_gan.py")
    # WaveNet-only flags default to None, so that one given to a GAN generator can be refused.
    parser.add_argument("--seconds", type=positive_float, default=None,
                        help=f"length of each output (default: {DEFAULT_SECONDS:g}; WaveNets only)")
    parser.add_argument("--output", help="output WAV file (one stream)")
    parser.add_argument("--num", type=positive_int, help="write this many files, generated together in one batch")
    parser.add_argument("--output-dir", help="folder for the files of --num or of several --class "
                                             "(sample_001.wav, ...; sample_001_NAME.wav, ... with classes)")
    parser.add_argument("--temperature", type=non_negative_float, default=None,
                        help=f"sampling temperature; 0 takes the most likely sample (default: {DEFAULT_TEMPERATURE:g}, "
                             f"{DEFAULT_VOCODER_TEMPERATURE:g} with a spectrogram, the best measured; WaveNets only)")
    parser.add_argument("--prime", help="audio file whose continuation is generated (WaveNets only)")
    parser.add_argument("--class", dest="classes", action="append", metavar="NAME", default=None,
                        help="class-conditioned model: generate this class (repeat for one file per class; with "
                             "--num, the classes given are cycled over the files). Without --class, --num N cycles "
                             "the model's classes; with neither, a class-conditioned model is refused")
    spectrogram = parser.add_mutually_exclusive_group()
    spectrogram.add_argument("--mel-from", metavar="AUDIO",
                             help="mel-conditioned model (vocoder): resynthesise this audio from its log-mel "
                                  "spectrogram, computed with the model's saved settings at the model's rate; the "
                                  "output is (frames - 1) x hop samples long (--seconds and --prime are refused)")
    spectrogram.add_argument("--mel", metavar="FILE",
                             help="mel-conditioned model (vocoder): generate from this log-mel spectrogram, .npy "
                                  "(frames, n_mels) or .npz with 'mel' and settings checked against the model's; "
                                  "(streams, frames, n_mels) gives one file per row")
    parser.add_argument("--top-k", type=non_negative_int, default=None,
                        help="token language model: sample among the K most likely tokens (default: 0, all)")
    parser.add_argument("--top-p", type=unit_fraction, default=None,
                        help="token language model: sample among the most likely tokens whose probabilities add up "
                             "to P, in (0, 1] (default: 1, all)")
    parser.add_argument("--vocoder", metavar="MODEL",
                        help="token language model: render its log-mel frames with this vocoder (.keras from "
                             "train_wavenet.py or train_gan.py --condition mel, same mel settings); default: "
                             "Griffin-Lim")
    parser.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same audio")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default=None,
                        help="WaveNet generation: float32 (default, exact), or bfloat16: the weight matrices rounded "
                             "to bfloat16 and read as such (half the memory traffic; the arithmetic stays float32, "
                             "on any CPU), faster where generation waits on memory; the README's generation "
                             "section gives its speed and its cost in bits per sample")
    parser.add_argument("--engine", choices=("auto", "numba", "numpy"), default=None,
                        help="WaveNet (and token LM) generation path: the compiled kernel (numba), the portable NumPy "
                             "path, or auto: "
                             "the kernel, and NumPy with a warning if it cannot be built (default: $WAVEGEN_ENGINE, "
                             "else auto); both give the same audio")
    return parser


def unit_fraction(text):
    """A float in (0, 1], for --top-p."""
    value = positive_float(text)
    if value > 1:
        raise ValueError(f"must be in (0, 1], got {text}")
    return value


unit_fraction.__name__ = "number in (0, 1]"


def spectrogram_flag(args):
    """`--mel-from` or `--mel`, whichever was given, or `None`."""
    return "--mel-from" if args.mel_from is not None else "--mel" if args.mel is not None else None


def check_flags(args):
    """Refuses combinations that no model accepts, before TensorFlow loads."""
    flag = spectrogram_flag(args)
    if flag and args.prime is not None:
        raise UsageError(f"--prime cannot be combined with {flag}: the spectrogram sets the whole output")
    if flag and args.seconds is not None:
        raise UsageError(f"--seconds cannot be combined with {flag}: the spectrogram sets the length "
                         "((frames - 1) x hop samples); leave --seconds out")


def cycled(labels, count):
    """`labels` repeated in order until there are `count` of them."""
    return [labels[i % len(labels)] for i in range(count)]


def file_label(name):
    """A class name as it appears in a file name: characters other than letters, digits, `.`, `-`, `_` become `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(name)).strip(".") or "class"


def output_paths(args, labels=None):
    """The files to write, checked before any work is done: each a .wav, not a folder, in a folder that exists
    or can be made and in which files can be created.

    One file for `--output`; `--num` files, or one per `--class`, in `--output-dir`: `sample_001.wav`, ..., or
    `sample_001_NAME.wav` when each has a class (`labels`, one per file; default the `--class` names, cycled).
    """
    from data.files import folder_problem

    classes = args.classes or []
    count = args.num if args.num is not None else max(1, len(classes))
    if labels is None and classes:
        labels = cycled(classes, count)
    if args.num is None and count == 1:
        if not args.output:
            raise UsageError("give --output FILE.wav, or --num N --output-dir DIR")
        paths, named = [Path(args.output)], args.output
    else:
        if not args.output_dir:
            raise UsageError("--num needs --output-dir" if args.num is not None else
                             f"{len(classes)} --class values write one file each: give --output-dir DIR "
                             "instead of --output")
        paths = [Path(args.output_dir) / (f"sample_{i + 1:03d}.wav" if labels is None else
                                          f"sample_{i + 1:03d}_{file_label(labels[i])}.wav") for i in range(count)]
        named = args.output_dir
    for path in paths:
        if path.exists() and path.is_dir():
            raise UsageError(f"{path}: is a folder, not a file")
        if path.suffix.lower() != ".wav":
            raise UsageError(f"{path}: output must be a .wav file")
    problem = folder_problem(paths[0].parent)
    if problem:
        raise UsageError(f"{named}: cannot write there: {problem}")
    return paths


def make_folders(paths):
    """Creates the missing folders of `paths` (all in one folder, see `output_paths`), when about to write;
    returns them, deepest first, so that `remove_folders` can take them back after a failure."""
    created = []
    for folder in reversed([paths[0].parent, *paths[0].parent.parents]):
        if not folder.exists():
            try:
                folder.mkdir()
            except OSError as error:
                remove_folders(created[::-1])
                raise UsageError(f"{folder}: cannot create the folder ({error.strerror or error})") from None
            created.append(folder)
    return created[::-1]


def remove_folders(folders):
    """Removes folders this run created, if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def write_clips(generator, paths, seed, labels=None):
    """Writes one GAN clip per path (of the class in `labels` for each, for a class-conditional generator)."""
    import models
    from data.audio import write_audio

    sample_rate = generator.get_layer("audio").sample_rate
    clips = models.generate_clips(generator, len(paths), seed=seed, classes=labels)
    created, finished = make_folders(paths), False
    try:
        for path, clip in zip(paths, clips):
            write_audio(path, clip, sample_rate)
        finished = True
    finally:
        if not finished:
            remove_folders(created)
    names = "" if labels is None else (f", class{'es' if len(set(labels)) > 1 else ''} "
                                       f"{', '.join(dict.fromkeys(labels))}")
    print(f"wrote {len(paths)} clip(s) of {clips.shape[1] / sample_rate:.2f} s at {sample_rate} Hz{names}: "
          f"{', '.join(str(p) for p in paths[:3])}{' ...' if len(paths) > 3 else ''}")
    return paths


def wavenet_length(args, sample_rate):
    """Samples per output of `--seconds`: at least one, and no more than a WAV holds."""
    seconds = DEFAULT_SECONDS if args.seconds is None else args.seconds
    num_samples = int(round(seconds * sample_rate))
    if num_samples < 1:
        raise UsageError(f"--seconds {seconds:g} is less than one sample at the model's {sample_rate} Hz; "
                         f"ask for at least {1 / sample_rate:.6g} s")
    if num_samples > WAV_MAX_SAMPLES:
        raise UsageError(f"--seconds {seconds:g} is {num_samples:,} samples at the model's {sample_rate} Hz, more than "
                         f"a 16-bit WAV holds (4 GiB: {WAV_MAX_SAMPLES / sample_rate:,.0f} s); ask for less per file")
    return num_samples


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_flags(args)
    paths = output_paths(args)  # before TensorFlow loads: a bad output fails in a second
    with sigterm_interrupts():  # SIGTERM, like Ctrl-C, removes the half-written files
        return generate_files(args, paths)


def generate_files(args, paths):
    """Loads the model and writes `paths`; nothing is created on disk until the request is known to be good."""
    quiet_tensorflow()
    import keras
    import soundfile as sf

    import models
    from data.audio import read_audio
    from data.files import atomic_path
    from models.generation import resolve_conditioning

    try:
        model = models.load_model(args.model)
    except models.ModelFileError as error:
        raise UsageError(str(error)) from None
    if args.precision is not None and (models.is_token_lm(model) or models.is_gan_generator(model)
                                       or models.is_gan_vocoder(model)):
        raise UsageError(f"--precision applies to WaveNet generation only; {args.model} is not a WaveNet")
    if models.is_token_lm(model):
        return write_lm_streams(args, model, paths)
    given = [flag for flag, value in (("--top-k", args.top_k), ("--top-p", args.top_p), ("--vocoder", args.vocoder))
             if value is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: appl{'ies' if len(given) == 1 else 'y'} to token language models "
                         f"(train_lm.py) only; {args.model} is not one")
    if models.is_gan_generator(model):
        given = [flag for flag, value in (("--seconds", args.seconds), ("--temperature", args.temperature),
                                          ("--prime", args.prime), ("--mel-from", args.mel_from),
                                          ("--mel", args.mel)) if value is not None]
        if given:
            length, rate = model.output_shape[1], model.get_layer("audio").sample_rate
            flags = f"{', '.join(given[:-1])} and {given[-1]}" if len(given) > 1 else given[0]
            raise UsageError(f"{args.model}: a GAN generator makes clips of its fixed length ({length} samples, "
                             f"{length / rate:.2f} s at {rate} Hz); {flags} "
                             f"appl{'ies' if len(given) == 1 else 'y'} to WaveNets only")
        labels, paths = stream_classes(args, models.gan_class_names(model), paths)
        return write_clips(model, paths, args.seed, labels)
    gan_vocoder = models.is_gan_vocoder(model)
    if gan_vocoder and args.temperature is not None:
        raise UsageError(f"--temperature: {args.model} is a GAN vocoder, which draws nothing at random; leave "
                         "--temperature out")
    try:
        spec = models.vocoder_spec(model) if gan_vocoder else models.wavenet_spec(model)
    except ValueError as error:
        raise UsageError(f"{args.model}: {error}") from None
    labels, paths = stream_classes(args, spec.class_names, paths)
    mel = spectrogram(args, spec, len(paths))
    if mel is None:
        num_samples = wavenet_length(args, spec.sample_rate)
    else:
        from data.features import samples_for_frames

        num_samples = samples_for_frames(mel.shape[-2], spec.mel)
        if num_samples > WAV_MAX_SAMPLES:
            raise UsageError(f"{spectrogram_flag(args)}: {mel.shape[-2]:,} frames make {num_samples:,} samples, more "
                             f"than a 16-bit WAV holds; split the spectrogram")
    temperature = args.temperature
    if temperature is None:
        temperature = DEFAULT_TEMPERATURE if mel is None else DEFAULT_VOCODER_TEMPERATURE
    prime = read_audio(args.prime, spec.sample_rate)[0] if args.prime else None
    try:  # the model's own checks of the request, before any file exists: a refusal is one line
        if not gan_vocoder:  # (a GAN vocoder's spectrogram was checked by `spectrogram`)
            resolve_conditioning(spec, len(paths), labels, mel, prime)
    except ValueError as error:
        raise UsageError(str(error)) from None

    created, temporary, files, finished = [], [], [], False
    progress = keras.utils.Progbar(num_samples, unit_name="sample", stateful_metrics=["samples/s"])
    start, done = time.perf_counter(), 0
    try:
        created = make_folders(paths)
        for path in paths:
            temporary.append(atomic_path(path))
            files.append(sf.SoundFile(str(temporary[-1]), "w", samplerate=spec.sample_rate, channels=1,
                                      subtype="PCM_16", format="WAV"))
        for chunk in models.generate_chunks(model, num_samples, num_streams=len(paths), temperature=temperature,
                                            prime=prime, seed=args.seed, engine=args.engine,
                                            chunk_size=max(1, spec.sample_rate // 10), classes=labels, mel=mel,
                                            precision=args.precision or "float32"):
            for file, stream in zip(files, chunk):
                file.write(stream)
            done += chunk.shape[1]
            rate = done * len(paths) / (time.perf_counter() - start)
            progress.update(done, values=[("samples/s", rate)])
        for file, tmp, path in zip(files, temporary, paths):
            file.close()
            tmp.replace(path)
        finished = True
    finally:
        for file in files:
            file.close()
        for tmp in temporary:
            tmp.unlink(missing_ok=True)
        if not finished:
            remove_folders(created)
    seconds = time.perf_counter() - start
    conditioning = ""
    if labels is not None:
        names = list(dict.fromkeys(labels))
        conditioning += f", class{'es' if len(names) > 1 else ''} {', '.join(names)}"
    if mel is not None:
        conditioning += f", from the log-mel spectrogram of {args.mel_from or args.mel} ({mel.shape[-2]} frames)"
    print(f"wrote {len(paths)} file(s) of {num_samples / spec.sample_rate:g} s at {spec.sample_rate} Hz{conditioning} "
          f"in {seconds:.1f} s ({done * len(paths) / max(seconds, 1e-9):,.0f} samples/s): "
          f"{', '.join(str(p) for p in paths[:3])}{' ...' if len(paths) > 3 else ''}")
    return paths


def write_lm_streams(args, model, paths):
    """Samples a token language model's streams, renders their frames and writes `paths` (one per stream)."""
    import keras

    import models
    from data.audio import read_audio, write_audio

    given = [flag for flag, value in (("--mel-from", args.mel_from), ("--mel", args.mel), ("--class", args.classes))
             if value is not None]
    if given:
        raise UsageError(f"{given[0]}: {args.model} is a token language model, which makes its own log-mel frames "
                         f"and has no classes; leave {given[0]} out")
    spec = models.lm_spec(model)
    vocoder = None
    if args.vocoder is not None:
        try:
            vocoder = models.load_model(args.vocoder)
            models.check_vocoder(spec.mel, vocoder, args.vocoder)
        except ValueError as error:  # (ModelFileError is one)
            raise UsageError(f"--vocoder {error}") from None
    num_samples = wavenet_length(args, spec.sample_rate)
    hop = spec.mel.hop_length
    num_tokens = -(-num_samples // hop) + 1  # frames F render (F - 1) x hop samples
    prime = None
    if args.prime is not None:
        signal = read_audio(args.prime, spec.sample_rate)[0]
        if len(signal) < hop:
            raise UsageError(f"--prime {args.prime}: {len(signal)} samples is shorter than one frame of the model "
                             f"({hop} samples at {spec.sample_rate} Hz, one token)")
        prime = models.tokenize(model, signal)
    temperature = DEFAULT_TEMPERATURE if args.temperature is None else args.temperature
    progress = keras.utils.Progbar(num_tokens, unit_name="token")

    def advance(done):
        if done % 50 == 0 or done == num_tokens:
            progress.update(done)

    start = time.perf_counter()
    tokens = models.generate_tokens(model, num_tokens, num_streams=len(paths), prime=prime, temperature=temperature,
                                    top_k=args.top_k or 0, top_p=1.0 if args.top_p is None else args.top_p,
                                    seed=args.seed, progress=advance, engine=args.engine)
    token_seconds = time.perf_counter() - start
    audio = models.render_frames(models.detokenize(model, tokens), spec.mel, vocoder, seed=args.seed,
                                 engine=args.engine)[:, :num_samples]
    render_seconds = time.perf_counter() - start - token_seconds
    created, finished = make_folders(paths), False
    try:
        for path, stream in zip(paths, audio):
            write_audio(path, stream, spec.sample_rate)
        finished = True
    finally:
        if not finished:
            remove_folders(created)
    rate = num_tokens * len(paths) / max(token_seconds, 1e-9)
    print(f"wrote {len(paths)} file(s) of {num_samples / spec.sample_rate:g} s at {spec.sample_rate} Hz"
          f"{', continuing ' + args.prime if prime is not None else ''}: {', '.join(str(p) for p in paths[:3])}"
          f"{' ...' if len(paths) > 3 else ''}\n{num_tokens * len(paths):,} tokens in {token_seconds:.2f} s "
          f"({rate:,.0f} tokens/s, {rate * hop / spec.sample_rate:.1f}x real time); rendered by "
          f"{args.vocoder or 'Griffin-Lim'} in {render_seconds:.2f} s")
    return paths


def stream_classes(args, class_names, paths):
    """`(class name per file or None, paths)` for a model with classes `class_names` (a WaveNet's or a WaveGAN's;
    empty for none); the paths are renamed after the model's classes when `--num` cycles them.

    Raises:
        UsageError: --class on a model without classes, an unknown class, or a class-conditioned model given
            neither --class nor --num.
    """
    if not class_names:
        if args.classes:
            raise UsageError(f"--class: {args.model} is not conditioned on classes (trained without them); "
                             "leave --class out")
        return None, paths
    known = ", ".join(class_names)
    if args.classes:
        import models

        try:
            models.class_ids(class_names, args.classes)
        except ValueError as error:  # an unknown class: the message lists the model's classes
            raise UsageError(f"--class: {error}") from None
        return cycled(args.classes, len(paths)), paths
    if args.num is None:
        raise UsageError(f"{args.model} is conditioned on classes: give --class NAME (one of: {known}), or --num N "
                         "--output-dir DIR to cycle through them")
    labels = cycled(list(class_names), len(paths))
    return labels, output_paths(args, labels)


def spectrogram(args, spec, num_streams):
    """The unpadded log-mel spectrogram of `--mel-from` or `--mel` for a mel-conditioned model: `(frames, n_mels)`,
    or `(num_streams, frames, n_mels)`; `None` without one.

    Raises:
        UsageError: a spectrogram for a model without mel conditioning, none for one with it, or one row per
            stream for another number of streams.
        data.features.FeatureError, data.audio.AudioError: a spectrogram or audio that does not fit.
    """
    flag = spectrogram_flag(args)
    if spec.mel is None:
        if flag:
            raise UsageError(f"{flag}: {args.model} is not conditioned on spectrograms (not a vocoder); "
                             f"leave {flag} out")
        return None
    if flag is None:
        raise UsageError(f"{args.model} is a vocoder conditioned on log-mel spectrograms ({spec.mel.describe()}): "
                         "give --mel-from AUDIO or --mel FILE.npy|.npz")
    from data.audio import read_audio
    from data.features import FeatureError, check_mel, load_mel, log_mel

    if args.mel_from is not None:
        signal = read_audio(args.mel_from, spec.sample_rate)[0]
        if len(signal) < spec.mel.hop_length:
            raise FeatureError(f"{args.mel_from}: {len(signal)} samples is shorter than one hop of the model's "
                               f"spectrogram ({spec.mel.hop_length} samples)")
        return check_mel(log_mel(signal, spec.mel), spec.mel, args.mel_from)
    mel = load_mel(args.mel, spec.mel)
    if mel.ndim == 3 and mel.shape[0] != num_streams:
        raise UsageError(f"--mel: {args.mel} holds {mel.shape[0]} spectrograms (streams, frames, n_mels) but "
                         f"{num_streams} file(s) were asked for; ask for {mel.shape[0]} with --num "
                         f"{mel.shape[0]} --output-dir DIR")
    return mel


if __name__ == "__main__":
    run(main, "generate.py")
