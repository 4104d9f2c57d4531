import warnings

import numpy as np
import soundfile as sf

from callbacks import SaveAudio
from tests.conftest import tone


def test_save_audio_writes_wav_and_spectrogram_at_the_right_rate_and_length(tmp_path, tiny_wavenet):
    model = tiny_wavenet()
    callback = SaveAudio(tmp_path / "samples", 8000, every=2, seconds=0.05, prime=tone(0.01))
    callback.set_model(model)
    for epoch in range(4):
        callback.on_epoch_end(epoch)
    names = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert names == ["epoch_0002.png", "epoch_0002.wav", "epoch_0004.png", "epoch_0004.wav"]
    info = sf.info(str(tmp_path / "samples" / "epoch_0002.wav"))
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (8000, 400, 1, "PCM_16")
    assert (tmp_path / "samples" / "epoch_0002.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_sample(tmp_path, tiny_wavenet):
    model = tiny_wavenet()
    callback = SaveAudio(tmp_path, 8000, seconds=0.02, seed=3)
    callback.set_model(model)
    np.testing.assert_array_equal(callback.sample(), callback.sample())


def test_folder_that_is_a_file_warns_instead_of_crashing(tmp_path, tiny_wavenet):
    blocker = tmp_path / "samples"
    blocker.write_text("a file where the folder should be")
    callback = SaveAudio(blocker, 8000, seconds=0.01)
    callback.set_model(tiny_wavenet())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_epoch_end(0)
    assert any("could not write" in str(w.message) for w in caught)



def test_a_generation_failure_is_a_warning_and_writes_nothing(tmp_path, tiny_wavenet, monkeypatch):
    from models import generation

    def broken(*args, **kwargs):
        raise RuntimeError("kernel exploded\nsecond line")

    monkeypatch.setattr(generation, "pack_weights", broken)
    callback = SaveAudio(tmp_path / "samples", 8000, seconds=0.01)
    callback.set_model(tiny_wavenet())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_epoch_end(0)
    messages = [str(w.message) for w in caught if "SaveAudio" in str(w.message)]
    assert messages == ["SaveAudio: could not generate the sample for epoch 1 (RuntimeError: kernel exploded); "
                        "training goes on"]
    assert not (tmp_path / "samples").exists()
