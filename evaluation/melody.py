"""A melody longer than a WaveNet's receptive field, and a check that a continuation plays it: the learning test of
the token language model (tests/test_lm.py) and its comparison with a WaveNet (bench/melody.py).

Eight notes of 0.25 s repeat every 2 s. A model primed with some whole notes of it continues the melody when the
spectral peak of each note it plays is within `tolerance` (3%: half a semitone) of the note that comes next.

Example:

>>> audio = melody(2.0, 8000, first_note=3)
>>> notes_matched(audio, 8000, first_note=3, count=8)
1.0
"""

import numpy as np

MELODY = (262.0, 330.0, 392.0, 523.0, 440.0, 349.0, 294.0, 494.0)  # Hz
NOTE_SECONDS = 0.25


def melody(seconds, rate, first_note=0, amplitude=0.5):
    """`seconds` (whole notes) of the melody from note `first_note`, float32 at `rate`."""
    t = np.arange(int(NOTE_SECONDS * rate)) / rate
    notes = [amplitude * np.sin(2 * np.pi * MELODY[(first_note + i) % len(MELODY)] * t)
             for i in range(int(round(seconds / NOTE_SECONDS)))]
    return np.concatenate(notes).astype(np.float32)


def note_pitches(audio, rate, count, offset=0.0):
    """The spectral peak (Hz) of the middle half of each of `count` notes, the first starting `offset` seconds
    into `audio` (negative: before it)."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    pitches = []
    for k in range(count):
        start = int(round((offset + NOTE_SECONDS * (k + 0.25)) * rate))
        segment = audio[max(start, 0):start + int(NOTE_SECONDS / 2 * rate)]
        if len(segment) < 16:
            pitches.append(0.0)
            continue
        spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), 8 * len(segment)))
        pitches.append(float(np.argmax(spectrum) * rate / (8 * len(segment))))
    return np.array(pitches)


def notes_matched(audio, rate, first_note, count, offset=0.0, tolerance=0.03):
    """The fraction of `count` notes of `audio` (from `offset` s) whose pitch is within `tolerance` of the
    melody's, starting at note `first_note`."""
    expected = np.array([MELODY[(first_note + k) % len(MELODY)] for k in range(count)])
    return float(np.mean(np.abs(note_pitches(audio, rate, count, offset) / expected - 1.0) < tolerance))


# The learning test's token LM (tests/test_lm.py; bench/melody.py compares it with a WaveNet): 8 kHz audio.
LM_RATE = 8000


def melody_lm(seed=0):
    """The tiny token LM of the learning test, untrained and compiled, with the tokens of 40 s of the melody that
    it trains on: `(lm, tokens)`. Codebook of 16 entries fitted on those frames; 2 blocks of 32, 2 heads; context
    256 tokens (3.2 s, more than the 2 s period); Adam 3e-3."""
    import keras

    import models
    from data.features import log_mel, mel_settings
    from data.tokens import encode_frames, fit_codebook

    keras.utils.set_random_seed(seed)
    settings = mel_settings(LM_RATE)
    frames = log_mel(melody(40.0, LM_RATE), settings)
    codebook = fit_codebook(frames, 16, seed=seed)
    lm = models.build_token_lm(settings, 16, 256, model_dim=32, layers=2, heads=2, dropout=0.0)
    models.set_codebook(lm, codebook)
    lm.compile(optimizer=keras.optimizers.Adam(3e-3, clipnorm=1.0),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return lm, encode_frames(frames, *codebook)


def train_melody_lm(lm, tokens, steps, seed=0):
    """Trains `melody_lm`'s model for `steps` batches of 8 windows of 256 tokens."""
    from data.frames import FrameGenerator

    lm.fit(FrameGenerator([tokens], 256, 8, steps, mode="tokens", seed=seed).as_dataset(), steps_per_epoch=steps,
           epochs=1, shuffle=False, verbose=0)
    return lm


def continuation_matched(lm, seed=0, temperature=0.7):
    """`notes_matched` of a token LM's 4 s continuation (16 notes) of the melody's first 3 s, rendered by
    Griffin-Lim."""
    import models

    prime = models.tokenize(lm, melody(3.0, LM_RATE))  # 241 frames: the last is centred on 3 s
    generated = models.generate_tokens(lm, 4 * 80 + 1, prime=prime, temperature=temperature, seed=seed)
    audio = models.render_frames(models.detokenize(lm, generated), models.lm_spec(lm).mel, seed=seed)[0]
    # Sample n of the rendering is frame 241 + n / hop, at 3.0125 s + n / rate: note 12 began 12.5 ms before.
    return notes_matched(audio, LM_RATE, first_note=12, count=16, offset=-0.0125)
