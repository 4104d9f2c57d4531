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
