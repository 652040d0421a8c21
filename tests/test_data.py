"""Data: SNR mixing, synthetic generators, corpus manifests, MixingDataset, paired sets, dev set."""
from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from mtakd.audio import AudioError, load_audio
from mtakd.config import DataConfig
from mtakd.data import Corpus, DataError, MixingDataset, PairedDataset, build_devset, collate
from mtakd.mixing import fit_length, mix_at_snr, reverberate, rms_dbfs, set_level
from mtakd.synth import NOISE_KINDS, colored_noise, synth_noise, synth_rir, synth_speech

SR = 16000


def _snr(clean, noise):
    return 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2))


# ----------------------------------------------------------------------------- mixing
def test_mix_at_snr_exact_over_many_draws(rng):
    for _ in range(300):
        n = int(rng.integers(100, 4000))
        clean = (rng.standard_normal(n) * rng.uniform(1e-4, 1)).astype(np.float32)
        noise = (rng.standard_normal(n) * rng.uniform(1e-4, 10) + rng.uniform(-1, 1)).astype(np.float32)
        snr = float(rng.uniform(-5, 20))
        noisy, scaled = mix_at_snr(clean, noise, snr)
        assert noisy.dtype == np.float32 and noisy.shape == (n,)
        assert abs(_snr(clean, scaled) - snr) < 0.1
        assert abs(_snr(clean, noisy - clean) - snr) < 0.1


def test_mix_at_snr_silent_signals():
    clean = np.ones(100, np.float32)
    with np.errstate(all="raise"):
        noisy, scaled = mix_at_snr(clean, np.zeros(100, np.float32), 5.0)
        assert np.array_equal(noisy, clean) and not scaled.any()
        noisy, scaled = mix_at_snr(np.zeros(100, np.float32), clean, 5.0)
        assert np.array_equal(scaled, clean) and np.isfinite(noisy).all()
    with pytest.raises(ValueError):
        mix_at_snr(clean, np.ones(99, np.float32), 0.0)


def test_set_level_and_peak_limit(rng):
    clean = (0.01 * rng.standard_normal(1000)).astype(np.float32)
    noisy = clean + (0.01 * rng.standard_normal(1000)).astype(np.float32)
    c, n, g = set_level(clean, noisy, -30.0)
    assert abs(rms_dbfs(n) - (-30.0)) < 0.01 and np.allclose(c, clean * g, atol=1e-7)
    c, n, _ = set_level(clean, noisy, 0.0)  # would clip: gain lowered
    assert np.abs(n).max() <= 0.99 + 1e-6 and np.abs(c).max() <= 0.99 + 1e-6


def test_fit_length_crop_and_loop(rng):
    x = np.arange(1000, dtype=np.float32)
    y = fit_length(x, 300, rng)
    assert y.size == 300 and np.all(np.diff(y) == 1)  # a contiguous crop
    z = fit_length(rng.standard_normal(700).astype(np.float32), 5000, rng)
    assert z.size == 5000 and np.isfinite(z).all()
    assert fit_length(np.zeros(0, np.float32), 10, rng).size == 10


def test_reverberate_aligns_direct_path_and_keeps_early_part(rng):
    s = synth_speech(8000, rng)
    rir = np.zeros(4000, np.float32)
    rir[100] = 0.5  # delayed direct path
    rir[100 + 400] = 0.3  # 25 ms reflection: inside the 50 ms early window
    rir[100 + 2000] = 0.2  # 125 ms: late
    rev, early = reverberate(s, rir)
    assert rev.shape == early.shape == s.shape
    exp_early = s.copy()
    exp_early[400:] += 0.6 * s[:-400]
    np.testing.assert_allclose(early, exp_early, atol=1e-5)
    exp_rev = exp_early.copy()
    exp_rev[2000:] += 0.4 * s[:-2000]
    np.testing.assert_allclose(rev, exp_rev, atol=1e-5)


# ----------------------------------------------------------------------------- synthetic audio
def test_synth_generators_deterministic_and_sane():
    a = synth_speech(16000, np.random.default_rng(3))
    assert np.array_equal(a, synth_speech(16000, np.random.default_rng(3)))
    assert a.dtype == np.float32 and a.shape == (16000,) and np.isfinite(a).all() and np.abs(a).max() <= 0.9
    assert not np.array_equal(a, synth_speech(16000, np.random.default_rng(4)))
    for kind in NOISE_KINDS:
        n1 = synth_noise(8000, np.random.default_rng(1), kind)
        assert np.array_equal(n1, synth_noise(8000, np.random.default_rng(1), kind))
        assert n1.shape == (8000,) and n1.dtype == np.float32 and abs(rms_dbfs(n1) + 26.02) < 0.1
    with pytest.raises(ValueError, match="unknown noise kind"):
        synth_noise(10, np.random.default_rng(0), "purple")
    h = synth_rir(np.random.default_rng(0))
    assert np.argmax(np.abs(h)) == 0


def test_colored_noise_slope():
    def tilt(x):  # power in 2-4 kHz relative to 125-250 Hz, dB
        p = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(x.size, 1 / SR)
        return 10 * np.log10(p[(f > 2000) & (f < 4000)].mean() / p[(f > 125) & (f < 250)].mean())

    rng = np.random.default_rng(0)
    # 4 octaves apart: white ~0 dB, pink ~-12 dB, brown ~-24 dB
    for beta, want in ((0.0, 0.0), (1.0, -12.0), (2.0, -24.0)):
        assert abs(tilt(colored_noise(64000, rng, beta)) - want) < 2.0


# ----------------------------------------------------------------------------- MixingDataset (synthetic)
def _cfg(**kw):
    base = dict(source="synthetic", segment_s=0.5, p_babble=0.0, p_colored=0.0, p_reverb=0.0, items_per_epoch=6)
    base.update(kw)
    return DataConfig(**base)


def test_mixing_dataset_shape_and_determinism():
    cfg = _cfg(p_colored=0.3, p_reverb=0.3)
    ds = MixingDataset(cfg, "train", seed=7)
    assert len(ds) == 6 and len(MixingDataset(cfg, "train", seed=7, length=3)) == 3
    a, b = ds[2], ds[2]
    assert set(a) == {"noisy", "clean"}
    for k in a:
        assert a[k].dtype == torch.float32 and a[k].shape == (8000,)
        assert torch.equal(a[k], b[k])
    assert not torch.equal(ds[1]["noisy"], ds[2]["noisy"])
    ds.set_epoch(1)
    assert not torch.equal(ds[2]["noisy"], a["noisy"])
    ds.set_epoch(0)
    assert torch.equal(ds[2]["noisy"], a["noisy"])
    assert not torch.equal(MixingDataset(cfg, "train", seed=8)[2]["noisy"], a["noisy"])
    with pytest.raises(IndexError):
        ds[6]


def test_mixing_dataset_snr_and_level():
    cfg = _cfg(snr_range=[3.0, 3.0], level_range_db=[-30.0, -30.0])
    ds = MixingDataset(cfg, "train", seed=0)
    for i in range(3):
        it = ds[i]
        noisy, clean = it["noisy"].numpy(), it["clean"].numpy()
        assert abs(_snr(clean, noisy - clean) - 3.0) < 0.1
        assert abs(rms_dbfs(noisy) + 30.0) < 0.1 and np.abs(noisy).max() <= 0.99 + 1e-6


@pytest.mark.parametrize("field,kind", [("p_babble", "babble"), ("p_colored", "colored")])
def test_mixing_dataset_branches(field, kind):
    ds = MixingDataset(_cfg(**{field: 1.0}), "train", seed=1, length=2)
    meta = ds.describe(0)
    assert meta["kind"] == kind and not meta["reverb"]
    it = ds[0]
    assert torch.isfinite(it["noisy"]).all() and not torch.equal(it["noisy"], it["clean"])


def test_mixing_dataset_reverb_branch():
    ds = MixingDataset(_cfg(p_reverb=1.0, snr_range=[40.0, 40.0]), "train", seed=1, length=2)
    meta = ds.describe(0)
    assert meta["reverb"] and meta["rir"] == "synthetic"
    it = ds[0]
    # at 40 dB SNR the remaining difference is the late reverberation the target leaves out
    diff = it["noisy"] - it["clean"]
    assert 10 * torch.log10(diff.pow(2).sum() / it["clean"].pow(2).sum()) > -35


def test_mixing_dataset_rejects_bad_config():
    with pytest.raises(DataError, match="p_babble"):
        MixingDataset(_cfg(p_babble=0.7, p_colored=0.7), "train", seed=0)
    with pytest.raises(DataError, match="snr_range"):
        MixingDataset(_cfg(snr_range=[10.0, 0.0]), "train", seed=0)
    with pytest.raises(DataError, match="source"):
        MixingDataset(_cfg(source="magic"), "train", seed=0)


def test_worker_errors_stay_one_line(tmp_path):
    # a broken corpus file inside a DataLoader worker reaches the caller as a one-line DataError
    # or AudioError, not as a traceback text (simulated with torch's own re-raise wrapper)
    from torch._utils import ExceptionWrapper

    (tmp_path / "s" / "a").mkdir(parents=True)
    (tmp_path / "s" / "a" / "x.wav").write_bytes(b"garbage" * 50)
    (tmp_path / "speech.csv").write_text("path,split,speaker\ns/a/x.wav,train,a\n")
    ds = MixingDataset(DataConfig(source="corpus", root=str(tmp_path), p_colored=1.0, p_babble=0.0), "train", seed=0)
    try:
        ds[0]
    except AudioError:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(AudioError) as e:
        wrapper.reraise()
    assert str(e.value).startswith(str(tmp_path / "s" / "a" / "x.wav")) and "\n" not in str(e.value)
    assert "Traceback" not in str(e.value)
    with pytest.raises(DataError, match="seed"):
        MixingDataset(_cfg(), "train", seed=-1)


def test_collate_and_dataloader():
    ds = MixingDataset(_cfg(), "train", seed=0, length=4)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert batch["noisy"].shape == (4, 8000) and batch["clean"].shape == (4, 8000)
    b = collate([{"x": torch.zeros(3), "name": "a"}, {"x": torch.ones(3), "name": "b"}])
    assert b["x"].shape == (2, 3) and b["name"] == ["a", "b"]
    with pytest.raises(ValueError, match="lengths differ"):
        collate([{"x": torch.zeros(3)}, {"x": torch.zeros(4)}])


# ----------------------------------------------------------------------------- fake corpus
@pytest.fixture(scope="module")
def fake_corpus(tmp_path_factory):
    """speech/{train,dev}/<spk>/*.flac, noise/{train,dev}, rir/ + manifests, all generated."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(123)
    rows = {"speech": [], "noise": [], "rir": []}
    speakers = {"train": ["s01", "s02", "s03", "s04", "s05"], "dev": ["d01", "d02"]}
    for split, spks in speakers.items():
        for spk in spks:
            (root / "speech" / split / spk).mkdir(parents=True)
            for j in range(2):
                rel = f"speech/{split}/{spk}/{spk}_{j}.flac"
                x = synth_speech(int(rng.uniform(0.25, 0.6) * SR), rng)
                sf.write(root / rel, x, SR, subtype="PCM_16")
                rows["speech"].append([rel, split, spk, "f", "30", f"{x.size / SR:.3f}", "TEXT", "synth", "CC0"])
        (root / "noise" / split).mkdir(parents=True)
        for j, kind in enumerate(["pink", "hum"]):
            rel = f"noise/{split}/{kind}_{j}.flac"
            x = synth_noise(int(0.3 * SR), rng, kind)
            sf.write(root / rel, x, SR, subtype="PCM_16")
            rows["noise"].append([rel, split, kind, f"{x.size / SR:.3f}", "synth", "CC0"])
    (root / "rir").mkdir()
    h = np.zeros(1600, np.float32)
    h[50], h[900] = 0.8, 0.3
    sf.write(root / "rir" / "r1.flac", h, SR, subtype="PCM_24")
    rows["rir"].append(["rir/r1.flac", "train", "rir", "0.100", "synth", "CC0"])
    heads = {"speech": "path,split,speaker,gender,age,duration_s,text,source,licence",
             "noise": "path,split,category,duration_s,source,licence", "rir": "path,split,category,duration_s,source,licence"}
    for name, head in heads.items():
        with open(root / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(head.split(","))
            w.writerows(rows[name])
    return root


def test_corpus_from_manifests(fake_corpus):
    c = Corpus.from_manifests(fake_corpus, "train")
    assert len(c.speech) == 10 and len(c.noise) == 2 and len(c.rir) == 1
    assert sorted(c.speakers) == ["s01", "s02", "s03", "s04", "s05"]
    assert all(it.duration_s is not None for it in c.speech)  # from the manifest, no file read
    assert not c._cache
    x = c.load(c.speech[0])
    assert x is c.load(c.speech[0]) and not x.flags.writeable
    d = Corpus.from_manifests(fake_corpus, "dev")
    assert sorted(d.speakers) == ["d01", "d02"] and not d.rir
    with pytest.raises(DataError, match="split 'test'"):
        Corpus.from_manifests(fake_corpus, "test")


def test_corpus_cache_is_bounded(fake_corpus):
    c = Corpus.from_manifests(fake_corpus, "train", cache_mb=0.05)  # ~3 short files
    for it in c.speech:
        c.load(it)
    assert c._cache_bytes <= 0.05 * 2**20 and 0 < len(c._cache) < len(c.speech)


def test_corpus_from_dirs_uses_split_subfolder_and_parent_speaker(fake_corpus):
    cfg = DataConfig(source="corpus", speech_dirs=[str(fake_corpus / "speech")], noise_dirs=[str(fake_corpus / "noise")])
    c = Corpus.from_config(cfg, "dev")
    assert sorted(c.speakers) == ["d01", "d02"] and len(c.noise) == 2 and not c.rir


def test_corpus_errors(fake_corpus, tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        Corpus.from_manifests(tmp_path, "train")
    (tmp_path / "speech.csv").write_text("path,split,speaker\nspeech/x.flac,train,a\n")
    with pytest.raises(DataError, match="do not exist") as e:
        Corpus.from_manifests(tmp_path, "train")
    assert "speech/x.flac" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "speech.csv").write_text("path,speaker\n")
    with pytest.raises(DataError, match="lacks column"):
        Corpus.from_manifests(tmp_path, "train")
    with pytest.raises(AudioError, match="neither data.root"):
        Corpus.from_config(DataConfig(source="corpus"), "train")


def test_mixing_dataset_on_fake_corpus(fake_corpus):
    cfg = DataConfig(source="corpus", root=str(fake_corpus), segment_s=1.0, p_babble=0.0, p_colored=0.0,
                     p_reverb=0.0, items_per_epoch=4)
    ds = MixingDataset(cfg, "train", seed=3)
    it = ds[0]
    assert it["noisy"].shape == (16000,) and torch.equal(ds[0]["clean"], it["clean"])
    meta = ds.describe(0)
    assert meta["kind"] == "noise" and "noise/train/" in meta["noise"]
    # utterances are < 1 s: filled from the same speaker, or zero-padded
    spk = meta["speech"][0].split("/")[-2]
    assert all(f"/{spk}/" in f for f in meta["speech"])
    # babble: other speakers only
    bab = MixingDataset(dataclasses.replace(cfg, p_babble=1.0), "train", seed=3)
    for i in range(3):
        m = bab.describe(i)
        spk = m["speech"][0].split("/")[-2]
        voices = m["noise"][len("babble(") : -1].split(",")
        assert 3 <= len(voices) <= 4 and spk not in voices  # 4 other speakers exist
    # reverb with the corpus RIR; dev split has none -> synthetic RIR
    rev = MixingDataset(dataclasses.replace(cfg, p_reverb=1.0), "train", seed=3)
    assert rev.describe(0)["rir"].endswith("rir/r1.flac") and torch.isfinite(rev[0]["noisy"]).all()
    dev = MixingDataset(dataclasses.replace(cfg, p_reverb=1.0), "dev", seed=3)
    assert dev.describe(1)["rir"] == "synthetic"


def test_build_devset_on_fake_corpus(fake_corpus, tmp_path):
    cfg = DataConfig(source="corpus", root=str(fake_corpus))
    n = build_devset(cfg, tmp_path / "dev", snrs=(0, 10), per_snr=3)
    assert n == 6
    rows = list(csv.DictReader(open(tmp_path / "dev" / "manifest.csv")))
    assert [r["name"] for r in rows[:3]] == ["snr+00_0000.wav", "snr+00_0001.wav", "snr+00_0002.wav"]
    for r in rows:
        assert r["speech_file"].startswith("speech/dev/") and r["noise_file"].startswith("noise/dev/")
        clean, _ = load_audio(tmp_path / "dev" / "clean" / r["name"])
        noisy, _ = load_audio(tmp_path / "dev" / "noisy" / r["name"])
        src, _ = load_audio(fake_corpus / r["speech_file"])
        assert clean.size == noisy.size == src.size  # full utterance, no crop
        assert abs(_snr(clean, noisy - clean) - float(r["snr"])) < 0.2


def test_build_devset_noise_match_keeps_only_matching_noise(fake_corpus, tmp_path):
    cfg = DataConfig(source="corpus", root=str(fake_corpus))
    assert build_devset(cfg, tmp_path / "hum", snrs=(2.5,), per_snr=3, noise_match=("*hum*",)) == 3
    rows = list(csv.DictReader(open(tmp_path / "hum" / "manifest.csv")))
    assert {r["noise_file"] for r in rows} == {"noise/dev/hum_1.flac"}
    assert rows[0]["name"] == "snr+02.5_0000.wav"
    with pytest.raises(DataError, match=r"no dev noise file name matches \*tap\*"):
        build_devset(cfg, tmp_path / "tap", snrs=(0,), per_snr=1, noise_match=("*tap*",))
    assert not (tmp_path / "tap").exists()


# ----------------------------------------------------------------------------- paired / dev set
def test_paired_dataset(tmp_path, rng):
    for sub in ("noisy", "clean"):
        (tmp_path / sub).mkdir()
        for name in ("a.wav", "b.wav"):
            sf.write(tmp_path / sub / name, 0.1 * rng.standard_normal(1600 if name == "a.wav" else 800), SR)
    ds = PairedDataset(tmp_path)
    assert len(ds) == 2 and ds[0]["name"] == "a.wav" and ds[0]["noisy"].shape == ds[0]["clean"].shape == (1600,)
    assert len(PairedDataset(tmp_path, max_files=1)) == 1
    sf.write(tmp_path / "noisy" / "c.wav", np.zeros(10), SR)
    sf.write(tmp_path / "clean" / "d.wav", np.zeros(10), SR)
    with pytest.raises(DataError) as e:
        PairedDataset(tmp_path)
    msg = str(e.value)
    assert "c.wav" in msg and "d.wav" in msg and "\n" not in msg
    with pytest.raises(AudioError, match="'noisy/' not found"):
        PairedDataset(tmp_path / "noisy")


def test_build_devset_synthetic(tmp_path):
    cfg = DataConfig(source="synthetic", level_range_db=[-28.0, -22.0])
    out = tmp_path / "dev"
    n = build_devset(cfg, out, snrs=(-5, 5), per_snr=2, segment_s=0.5)
    assert n == 4
    names = ["snr+05_0000.wav", "snr+05_0001.wav", "snr-05_0000.wav", "snr-05_0001.wav"]
    for sub in ("noisy", "clean"):
        assert sorted(p.name for p in (out / sub).iterdir()) == names
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert [r["name"] for r in rows] == names[2:] + names[:2]
    assert set(rows[0]) == {"name", "speech_file", "noise_file", "snr", "level"}
    clean, _ = load_audio(out / "clean" / "snr-05_0001.wav")
    noisy, _ = load_audio(out / "noisy" / "snr-05_0001.wav")
    assert clean.size == 8000 and abs(_snr(clean, noisy - clean) + 5.0) < 0.2
    first = noisy.copy()
    with pytest.raises(DataError, match="not empty"):
        build_devset(cfg, out, snrs=(-5, 5), per_snr=2, segment_s=0.5)
    # overwrite: same seed, same files (reproducible); stale files of a bigger run removed
    (out / "noisy" / "snr+99_0000.wav").write_bytes(b"")
    build_devset(cfg, out, snrs=(-5, 5), per_snr=2, segment_s=0.5, overwrite=True)
    assert np.array_equal(load_audio(out / "noisy" / "snr-05_0001.wav")[0], first)
    assert sorted(p.name for p in (out / "noisy").iterdir()) == names


def test_preloaded_training_set_gives_the_same_items(fake_corpus):
    """data.preload decodes the split up front: same items as the lazy cache, no decoding later."""
    from mtakd.training_data import training_set

    cfg = DataConfig(source="corpus", root=str(fake_corpus), segment_s=1.0, p_babble=0.5, p_colored=0.2,
                     p_reverb=0.5, items_per_epoch=6)
    lazy = training_set(cfg, "train", seed=5)
    pre = training_set(dataclasses.replace(cfg, preload=True, cache_mb=0.0), "train", seed=5)
    assert pre.corpus.cache_bytes_max == float("inf")
    for i in range(6):
        a, b = lazy[i], pre[i]
        assert torch.equal(a["noisy"], b["noisy"]) and torch.equal(a["clean"], b["clean"])
