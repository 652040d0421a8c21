"""Property-based tests (hypothesis): the loader and the enhancer on random files.

Whatever the length (0..3 s), rate, channel count, sample format and content, loading and
enhancing either succeed (output: the input's length at the input's rate, finite) or raise
an ``AudioError`` whose message is one line naming the file. The same holds for files that
were cut at a random byte or had random bytes overwritten. Bounded: 25 examples each,
well under 30 s together.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtakd.audio import MAX_ABS_SAMPLE, AudioError, iter_blocks, load_audio
from mtakd.enhancement import enhance, get_engine
from mtakd.models import build_model

RATES = [8000, 11025, 16000, 22050, 44100, 48000]
SUBTYPES = ["PCM_16", "PCM_24", "FLOAT"]
CONTENTS = ["silence", "noise", "clipped", "tiny", "nan"]
BOUNDED = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def engine():
    import torch

    torch.manual_seed(0)
    return get_engine(build_model("student", {"hidden": 8, "input_size": 8}).eval())


def _content(kind: str, n: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, channels))
    if kind == "silence":
        return np.zeros((n, channels), np.float32)
    if kind == "clipped":
        return np.clip(3.0 * x, -1.0, 1.0).astype(np.float32)
    if kind == "tiny":
        return (1e-6 * x).astype(np.float32)
    x = (0.1 * x).astype(np.float32)
    if kind == "nan" and n:
        idx = rng.integers(0, n, size=max(1, n // 1000))
        x[idx, rng.integers(0, channels)] = rng.choice([np.nan, np.inf, -np.inf])
    return x


def _check(path: Path, engine) -> None:
    """The property: success with the right length/rate/finite values, or a one-line AudioError."""
    try:
        stored, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError):  # a file libsndfile cannot read at all
        stored, rate = None, None
    try:
        wav, info = load_audio(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = enhance(path, model=engine)
    except AudioError as e:
        msg = str(e)
        assert "\n" not in msg and str(path) in msg, msg
        plausible = stored is not None and np.isfinite(stored).all() and np.abs(stored).max(initial=0) <= MAX_ABS_SAMPLE
        if plausible and stored.shape[0] and 1000 <= rate <= 768000:
            pytest.fail(f"a readable, finite file was refused: {msg}")
        return
    assert stored is not None and stored.shape[0] > 0 and np.isfinite(stored).all()
    assert np.abs(stored).max() <= MAX_ABS_SAMPLE  # damage that large must have been refused
    n = stored.shape[0]
    assert info.orig_sr == rate and info.frames == n
    assert y.shape == (n,) and y.dtype == np.float32 and np.isfinite(y).all()
    assert wav.dtype == np.float32 and np.isfinite(wav).all()
    assert abs(wav.size - n * 16000 / rate) <= 1
    blocks = list(iter_blocks(path, block_s=0.37))  # bounded-memory reading agrees with whole-file
    assert np.allclose(np.concatenate(blocks), wav, atol=1e-4)


@BOUNDED
@given(seconds=st.floats(0.0, 3.0), rate=st.sampled_from(RATES), channels=st.integers(1, 6),
       subtype=st.sampled_from(SUBTYPES), content=st.sampled_from(CONTENTS), seed=st.integers(0, 2**16))
def test_random_files_load_and_enhance_or_fail_cleanly(engine, seconds, rate, channels, subtype, content, seed):
    n = int(seconds * rate)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"x {rate} {channels}ch.wav"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # soundfile warns when NaN is written as PCM
            sf.write(path, _content(content, n, channels, seed), rate, subtype=subtype)
        _check(path, engine)


@BOUNDED
@given(fmt=st.sampled_from([("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_24"), ("OGG", "VORBIS")]),
       cut=st.floats(0.0, 1.0), flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8),
       seed=st.integers(0, 2**16))
def test_damaged_files_load_and_enhance_or_fail_cleanly(engine, fmt, cut, flips, seed):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"damaged.{fmt[0].lower()}"
        x = _content("noise", 8000, 2, seed)
        sf.write(path, x, 22050, format=fmt[0], subtype=fmt[1])
        data = bytearray(path.read_bytes())
        for where, byte in flips:  # overwrite random bytes, then cut the file short
            data[int(where * (len(data) - 1))] = byte
        path.write_bytes(bytes(data[: int(round(cut * len(data)))]))
        _check(path, engine)
