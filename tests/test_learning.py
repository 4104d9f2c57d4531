"""A small WaveNet trained on a chord of three sines generates audio whose spectrum sits on those tones."""

import keras
import numpy as np
import pytest

import models
from data.frames import FrameGenerator
from tests.conftest import tone

RATE = 8000
TONES = (250.0, 375.0, 625.0)


def band_energy(spectrum, frequencies, centre, width=15.0):
    return spectrum[np.abs(frequencies - centre) <= width].sum()


@pytest.mark.slow
def test_wavenet_learns_a_chord():
    keras.utils.set_random_seed(0)
    chord = tone(20.0, rate=RATE, frequencies=TONES, amplitude=0.6)
    model = models.build_wavenet("classifier", stacks=1, layers=7, residual_channels=24, skip_channels=48,
                                 sample_rate=RATE)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=models.loss_for("categorical"),
                  metrics=[models.BitsPerSample("categorical")])
    frames = FrameGenerator([chord], frame_size=512, batch_size=8, steps_per_epoch=100, seed=0, epochs=3)
    history = model.fit(frames, epochs=3, steps_per_epoch=100, shuffle=False, verbose=0)
    assert history.history["bits_per_sample"][-1] < 3.0  # from 8 bits: it has learnt the waveform

    audio = models.generate(model, 4000, num_streams=2, temperature=1.0, prime=chord[:300], seed=0)
    for stream in audio:
        assert np.abs(stream).max() > 0.2  # not silence
        spectrum = np.abs(np.fft.rfft(stream * np.hanning(len(stream)))) ** 2
        frequencies = np.fft.rfftfreq(len(stream), 1.0 / RATE)
        on_tones = sum(band_energy(spectrum, frequencies, f) for f in TONES)
        assert on_tones / spectrum.sum() > 0.7
        for f in TONES:  # each tone is clearly present, not just one of them
            assert band_energy(spectrum, frequencies, f) / spectrum.sum() > 0.1
