"""Shared fixtures: seeded RNG, one torch thread (tests share 2 cores), generated audio, and the
tiny student and its checkpoint of the reliability tests."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def speech_noise(rng):
    """One second of synthetic speech and white noise at 16 kHz, float32."""
    from mtakd.synth import synth_noise, synth_speech

    s = synth_speech(16000, rng).astype(np.float32)
    n = synth_noise(16000, rng, "white").astype(np.float32)
    return s, n


# The tiny student (hidden 8) and its checkpoint of tests/test_reliability_inputs.py and
# tests/test_reliability_models.py. test_enhance, test_export, test_streaming and
# test_stream_cli define their own ``student`` (hidden 12), test_enhance and test_checkpoint
# their own ``ckpt``; a module's own fixture takes precedence over these.
@pytest.fixture(scope="module")
def student():
    from mtakd.models import build_model

    torch.manual_seed(0)
    return build_model("student", {"hidden": 8, "input_size": 8}).eval()


@pytest.fixture
def ckpt(student, tmp_path):
    from mtakd.checkpoint import save_checkpoint

    p = tmp_path / "model" / "student.safetensors"
    p.parent.mkdir()
    save_checkpoint(p, student)
    return p


@pytest.fixture
def tiny_devset(tmp_path):
    """A generated dev set of ``mtakd build-devset``'s layout: one 1 s file at 0 and at 10 dB,
    with its manifest (for the per-SNR reports of benchmarks/)."""
    from mtakd.config import DataConfig
    from mtakd.data import build_devset

    dev = tmp_path / "dev"
    build_devset(DataConfig(source="synthetic"), dev, snrs=(0, 10), per_snr=1, segment_s=1.0)
    return dev
