"""Audio I/O: round trips, resampling, downmix, formats, bad inputs, atomic save, blocks."""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from mtakd import audio
from mtakd.audio import AudioError, audio_info, iter_blocks, list_audio_files, load_audio, resample, save_audio

SR = 16000


def _sine(f, sr, seconds=1.0, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def _peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.fft.rfftfreq(x.size, 1 / sr)[np.argmax(spec)]


def test_save_load_round_trip(tmp_path, rng):
    x = (0.3 * rng.standard_normal(8000)).clip(-0.99, 0.99).astype(np.float32)
    p = tmp_path / "a.wav"
    save_audio(p, x, SR)
    y, info = load_audio(p)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= 0.5 / 32768 + 1e-7  # 16-bit rounding
    assert (info.orig_sr, info.channels, info.frames, info.subtype) == (SR, 1, 8000, "PCM_16")
    assert not info.downmixed and not info.resampled and info.silent is False


def test_save_clips_to_pcm16_range(tmp_path):
    p = tmp_path / "clip.wav"
    save_audio(p, np.array([1.5, 1.0, -1.0, -2.0, 0.25], np.float32), SR)
    y, info = load_audio(p)
    np.testing.assert_allclose(y, [32767 / 32768, 32767 / 32768, -1.0, -1.0, 0.25])
    assert info.clipped


def test_save_accepts_torch_tensor(tmp_path):
    torch = pytest.importorskip("torch")
    save_audio(tmp_path / "t.wav", torch.zeros(100), SR)
    y, info = load_audio(tmp_path / "t.wav")
    assert y.shape == (100,) and info.silent  # digital silence loads fine, flagged


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_resample_on_load_keeps_length_and_frequency(tmp_path, sr):
    p = tmp_path / f"s{sr}.wav"
    sf.write(p, _sine(1000.0, sr), sr, subtype="PCM_16")
    y, info = load_audio(p)
    assert info.resampled and info.orig_sr == sr
    assert abs(y.size - SR) <= 1
    assert abs(_peak_hz(y, SR) - 1000.0) <= 2.0
    # amplitude preserved away from the edges (soxr HQ is flat in the passband)
    assert abs(np.abs(y[2000:-2000]).max() - 0.5) < 0.01


def test_resample_helper():
    x = _sine(440.0, 48000, 0.5)
    y = resample(x, 48000, SR)
    assert y.dtype == np.float32 and y.size == 8000
    assert np.array_equal(resample(y, SR, SR), y)


@pytest.mark.parametrize("channels", [2, 6])
def test_downmix_is_channel_mean(tmp_path, rng, channels):
    x = (0.1 * rng.standard_normal((4000, channels))).astype(np.float32)
    p = tmp_path / f"c{channels}.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    y, info = load_audio(p)
    assert info.downmixed and info.channels == channels
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("subtype,tol", [("PCM_24", 2**-23), ("FLOAT", 0.0), ("PCM_16", 2**-15)])
def test_wav_subtypes(tmp_path, rng, subtype, tol):
    x = (0.2 * rng.standard_normal(3000)).astype(np.float32)
    p = tmp_path / f"{subtype}.wav"
    sf.write(p, x, SR, subtype=subtype)
    y, info = load_audio(p)
    assert info.subtype == subtype
    assert np.max(np.abs(y - x)) <= tol + 1e-8


def test_flac_and_ogg(tmp_path):
    x = _sine(500.0, 22050, 0.5, 0.3)
    sf.write(tmp_path / "a.flac", x, 22050, subtype="PCM_16")
    sf.write(tmp_path / "a.OGG", x, 22050, format="OGG", subtype="VORBIS")
    for name in ("a.flac", "a.OGG"):
        y, info = load_audio(tmp_path / name)
        assert abs(y.size - 8000) <= 1 and abs(_peak_hz(y, SR) - 500.0) <= 3
    assert audio_info(tmp_path / "a.flac").format == "FLAC"


def _bad_files(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(1000, np.float32) + 0.1, SR, subtype="PCM_16")
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "random.wav").write_bytes(np.random.default_rng(1).bytes(4000))
    (tmp_path / "truncated.wav").write_bytes(good.read_bytes()[:20])
    nan = np.full(1000, 0.1, np.float32)
    nan[500] = np.nan
    sf.write(tmp_path / "nan.wav", nan, SR, subtype="FLOAT")
    inf = np.full(10, 0.1, np.float32)
    inf[3] = np.inf
    sf.write(tmp_path / "inf.flac.wav", inf, SR, subtype="FLOAT")
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), SR, subtype="PCM_16")
    (tmp_path / "notes.txt.wav").write_text("hello, I am text\n" * 50)
    (tmp_path / "folder.wav").mkdir()
    return ["empty.wav", "random.wav", "truncated.wav", "nan.wav", "inf.flac.wav", "zero.wav",
            "notes.txt.wav", "folder.wav", "missing.wav"]


def test_bad_inputs_raise_one_line_audio_error(tmp_path):
    for name in _bad_files(tmp_path):
        for fn in (load_audio, lambda p: list(iter_blocks(p))):
            with pytest.raises(AudioError) as e:
                fn(tmp_path / name)
            msg = str(e.value)
            assert "\n" not in msg and name in msg, msg
            assert isinstance(e.value, ValueError)
    assert "NaN or Inf" in str(pytest.raises(AudioError, load_audio, tmp_path / "nan.wav").value)


def test_audio_error_survives_reconstruction_from_message():
    # DataLoader workers re-create exceptions as type(e)(str(e))
    e = AudioError("x.wav", "is broken", "fix it")
    assert str(type(e)(str(e))) == str(e) == "x.wav: is broken; fix it"
    # ... with the worker's traceback prepended: only the original one-line message is kept
    wrapped = ("Caught AudioError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
               '  File "x.py", line 1, in f\n    raise AudioError(...)\nmtakd.audio.AudioError: x.wav: is broken; fix it\n')
    assert str(AudioError(wrapped)) == "x.wav: is broken; fix it"


def test_atomic_save_leaves_no_temp_files(tmp_path, rng, monkeypatch):
    p = tmp_path / "out.wav"
    save_audio(p, np.zeros(10, np.float32), SR)
    save_audio(p, 0.1 * rng.standard_normal(500), SR)  # replace an existing file
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]
    assert load_audio(p)[0].size == 500

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audio.sf, "write", boom)
    with pytest.raises(AudioError, match="writing failed"):
        save_audio(p, np.zeros(123, np.float32), SR)
    with pytest.raises(AudioError):
        save_audio(tmp_path / "new.wav", np.zeros(123, np.float32), SR)
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]  # old file intact, no temp left
    monkeypatch.undo()
    assert load_audio(p)[0].size == 500


def test_save_errors(tmp_path):
    with pytest.raises(AudioError, match="does not exist") as e:
        save_audio(tmp_path / "nope" / "a.wav", np.zeros(10), SR)
    assert "\n" not in str(e.value)
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "a.wav", np.array([0.0, np.nan]), SR)
    with pytest.raises(AudioError):
        save_audio(tmp_path / "a.wav", np.zeros(0), SR)
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(AudioError, match="not writable"):
                save_audio(ro / "a.wav", np.zeros(10), SR)
        finally:
            ro.chmod(0o700)


@pytest.mark.parametrize("sr,channels", [(44100, 2), (SR, 1), (8000, 1)])
def test_iter_blocks_matches_load_audio(tmp_path, rng, sr, channels):
    x = (0.2 * rng.standard_normal((int(2.3 * sr), channels))).astype(np.float32)
    p = tmp_path / "long.flac"
    sf.write(p, x, sr, subtype="PCM_24")
    full, _ = load_audio(p)
    blocks = list(iter_blocks(p, block_s=0.3))
    assert all(b.dtype == np.float32 and b.size == 4800 for b in blocks[:-1])
    assert 0 < blocks[-1].size <= 4800
    y = np.concatenate(blocks)
    assert y.size == full.size
    assert np.max(np.abs(y - full)) < 1e-4


def test_audio_info_reads_header_only(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros((48000, 2), np.float32), 48000, subtype="PCM_16")
    info = audio_info(tmp_path / "a.wav")
    assert (info.orig_sr, info.channels, info.frames, info.duration_s) == (48000, 2, 48000, 1.0)
    assert info.silent is None


def test_list_audio_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ["a/x.wav", "a/b/y.FLAC", "a/b/z.ogg", "a/readme.txt", "a/.hidden.wav", "top.Wav"]:
        (tmp_path / rel).write_bytes(b"")
    got = list_audio_files([tmp_path / "a", tmp_path / "a" / "x.wav", str(tmp_path / "top.Wav")])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["a/b/y.FLAC", "a/b/z.ogg", "a/x.wav", "top.Wav"]
    assert list_audio_files(tmp_path / "a" / "b") == sorted(list_audio_files(tmp_path / "a" / "b"))
    with pytest.raises(AudioError, match="does not exist"):
        list_audio_files([tmp_path / "missing"])
    with pytest.raises(AudioError, match="not a .wav"):
        list_audio_files([tmp_path / "a" / "readme.txt"])


def test_absurd_float_values_are_refused_in_one_line(tmp_path):
    """A float WAV with values far beyond full scale (a damaged file) is refused by name,
    not turned into NaN output by overflow inside the model."""
    import numpy as np
    import soundfile as sf

    from mtakd.audio import AudioError, iter_blocks, load_audio

    x = np.zeros(1600, dtype=np.float32)
    x[800] = 3e30
    p = tmp_path / "damaged.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    for read in (lambda: load_audio(p), lambda: list(iter_blocks(p))):
        try:
            read()
        except AudioError as e:
            assert "damaged.wav" in str(e) and "0.050 s" in str(e) and "\n" not in str(e)
        else:
            raise AssertionError("absurd sample values were accepted")
    sf.write(p, np.clip(x, -2, 2), 16000, subtype="FLOAT")  # above full scale but plausible: accepted
    assert load_audio(p)[0].max() == 2.0
