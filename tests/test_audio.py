import numpy as np
import pytest
import soundfile as sf

from data.audio import AudioError, find_audio_files, load_audio, read_audio, split_validation, write_audio
from tests.conftest import tone, write_wav


@pytest.mark.parametrize("subtype,tolerance", [("PCM_U8", 1 / 64), ("PCM_16", 1e-4), ("PCM_24", 1e-4),
                                               ("PCM_32", 1e-4), ("FLOAT", 1e-4)])
def test_wav_sample_formats_scale_by_full_scale(tmp_path, subtype, tolerance):
    signal = tone(0.5, amplitude=0.25)
    path = write_wav(tmp_path / f"{subtype}.wav", signal, subtype=subtype)
    audio, rate = read_audio(path)
    assert rate == 8000 and audio.dtype == np.float32
    np.testing.assert_allclose(audio, signal, atol=tolerance)  # no min-max stretch: 0.25 stays 0.25
    assert abs(np.abs(audio).max() - 0.25) < max(1e-3, tolerance)


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = tone(0.5, frequencies=(300,)), tone(0.5, frequencies=(500,))
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1))
    audio, _ = read_audio(path)
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-4)


@pytest.mark.parametrize("extension,fmt,subtype", [(".flac", "FLAC", "PCM_16"), (".ogg", "OGG", "VORBIS")])
def test_compressed_formats(tmp_path, extension, fmt, subtype):
    signal = tone(0.5, frequencies=(440,))
    path = tmp_path / f"clip{extension}"
    sf.write(str(path), signal, 8000, format=fmt, subtype=subtype)
    audio, rate = read_audio(path)
    assert rate == 8000 and abs(len(audio) - len(signal)) < 100
    assert np.corrcoef(audio[:3000], signal[:3000])[0, 1] > 0.9


def test_resampling_keeps_duration_and_pitch(tmp_path):
    signal = tone(1.0, rate=44100, frequencies=(1000.0,))
    path = write_wav(tmp_path / "cd.wav", signal, rate=44100, subtype="PCM_24")
    audio, rate = read_audio(path, sample_rate=8000)
    assert rate == 8000 and len(audio) == 8000
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 8000 / len(audio) - 1000.0) <= 2.0


def test_folder_is_searched_recursively_and_resampled_to_one_rate(tmp_path):
    write_wav(tmp_path / "a" / "one.wav", tone(0.5, rate=8000))
    write_wav(tmp_path / "a" / "sub" / "two.wav", tone(0.5, rate=16000), rate=16000)
    (tmp_path / "notes.txt").write_text("not audio")
    corpus = load_audio(tmp_path)
    assert [p.name for p in corpus.files] == ["one.wav", "two.wav"]
    assert corpus.sample_rate == 8000 and [len(s) for s in corpus.signals] == [4000, 4000]


def test_split_validation_holds_out_the_end():
    from data.audio import AudioCorpus

    corpus = AudioCorpus([np.arange(100, dtype=np.float32)], 8000, ["x"])
    train, validation = split_validation(corpus, 0.1)
    assert np.array_equal(train.signals[0], np.arange(90)) and np.array_equal(validation.signals[0], np.arange(90, 100))


def make_bad(tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    if kind == "missing":
        return tmp_path / "nowhere.wav", "no such file"
    if kind == "not_audio":
        path.write_text("this is text, not a RIFF file\n" * 10)
        return path, "not a readable audio file"
    if kind == "empty":
        sf.write(str(path), np.zeros(0, np.float32), 8000)
        return path, "no samples"
    if kind == "silent":
        write_wav(path, np.zeros(8000, np.float32))
        return path, "silent"
    if kind == "nan":
        signal = tone(0.5)
        signal[100] = np.nan
        write_wav(path, signal, subtype="FLOAT")
        return path, "NaN or Inf"
    if kind == "inf":
        signal = tone(0.5)
        signal[7] = np.inf
        write_wav(path, signal, subtype="FLOAT")
        return path, "NaN or Inf"
    if kind == "empty_folder":
        (tmp_path / "folder").mkdir()
        (tmp_path / "folder" / "readme.txt").write_text("no audio here")
        return tmp_path / "folder", "no audio files"
    raise ValueError(kind)


BAD_KINDS = ["missing", "not_audio", "empty", "silent", "nan", "inf", "empty_folder"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_audio_is_one_line_naming_the_file(tmp_path, kind):
    path, problem = make_bad(tmp_path, kind)
    with pytest.raises(AudioError) as error:
        load_audio(path)
    message = str(error.value)
    assert str(path) in message and problem in message and "\n" not in message


def test_too_short_for_a_frame(tmp_path):
    path = write_wav(tmp_path / "short.wav", tone(0.01))
    with pytest.raises(AudioError, match="shorter than one frame"):
        load_audio(path, min_samples=1000)


def test_bad_files_in_a_folder_are_skipped_by_name(tmp_path):
    write_wav(tmp_path / "good.wav", tone(0.5))
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    corpus = load_audio(tmp_path, skip_bad_files=True)
    assert [p.name for p in corpus.files] == ["good.wav"]
    assert len(corpus.skipped) == 1 and "broken.wav" in corpus.skipped[0][1]


def test_write_audio_is_16_bit_and_atomic(tmp_path):
    path = tmp_path / "out.wav"
    write_audio(path, tone(0.25), 8000)
    info = sf.info(str(path))
    assert info.subtype == "PCM_16" and info.samplerate == 8000 and info.frames == 2000
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]  # no temporary left behind
    assert find_audio_files(path) == [path]
