"""Shared fixtures: seeded RNG, one torch thread (tests share 2 cores), generated audio."""
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
