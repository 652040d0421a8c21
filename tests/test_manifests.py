"""Manifest-driven corpora: DNS-style clean/noise folders and VoiceBank-DEMAND paired folders."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtakd.audio import save_audio
from mtakd.cli import main as cli_main
from mtakd.config import DataConfig, TrainConfig, load_config
from mtakd.data import Corpus, DataError, MixingDataset
from mtakd.manifests import PairedManifestDataset, make_dns_manifest, make_paired_manifest, training_set
from mtakd.synth import synth_noise, synth_speech
from mtakd.train import Trainer
from mtakd.validate import validation_items
from helpers import read_csv_rows


def _wav(path: Path, n: int, rng, kind="speech"):
    path.parent.mkdir(parents=True, exist_ok=True)
    x = synth_speech(n, rng) if kind == "speech" else synth_noise(n, rng, "white")
    save_audio(path, x.astype(np.float32), 16000)



def _forbid_walks(m):
    """Fail on any directory walk: a manifest-driven start must not list folders."""
    def boom(*a, **k):
        raise AssertionError("directory walk at start")

    m.setattr(Path, "rglob", boom)
    m.setattr(os, "walk", boom)
    for name in ("mtakd.audio", "mtakd.data", "mtakd.corpus"):  # wherever the folder lister is imported
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "list_audio_files"):
            m.setattr(mod, "list_audio_files", boom)


def test_dns_layout_manifest_feeds_the_mixing_dataset(tmp_path, rng, monkeypatch):
    for reader in (12, 34, 56, 78):
        for k in range(2):
            _wav(tmp_path / "dns" / "clean" / f"book_00001_chp_0001_reader_{reader:05d}_{k}.wav", 8000, rng)
    for k in range(4):
        _wav(tmp_path / "dns" / "noise" / f"noise_fileid_{k}.wav", 12000, rng, "noise")
    out = tmp_path / "manifests"
    counts = make_dns_manifest(str(tmp_path / "dns" / "clean"), str(tmp_path / "dns" / "noise"), out, dev_fraction=0.5)
    assert counts == {"speech": 8, "noise": 4}
    speech = read_csv_rows(out / "speech.csv")
    assert {r["speaker"] for r in speech} == {"00012", "00034", "00056", "00078"}
    by_speaker = {}
    for r in speech:  # a speaker is never split across train and dev
        by_speaker.setdefault(r["speaker"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_speaker.values())
    assert all(abs(float(r["duration_s"]) - 0.5) < 1e-3 for r in speech)
    split = next(s for s in ("train", "dev") if any(r["split"] == s for r in speech))

    with monkeypatch.context() as m:  # from here on: manifests only, no walking
        _forbid_walks(m)
        corpus = Corpus.from_manifests(out, split)
        cfg = DataConfig(source="corpus", root=str(out), segment_s=0.25, p_reverb=0.0, p_babble=0.0, p_colored=0.0, items_per_epoch=4)
        ds = MixingDataset(cfg, split, seed=0, corpus=corpus)
        item = ds[0]
    assert item["noisy"].shape == (4000,) and torch.isfinite(item["noisy"]).all()
    assert all(Path(it.path).is_file() for it in corpus.speech)  # paths relative to the manifest folder resolve


def test_split_folders_and_speaker_folders_are_recognised(tmp_path, rng):
    _wav(tmp_path / "speech" / "train" / "spk1" / "a.wav", 4000, rng)
    _wav(tmp_path / "speech" / "dev" / "spk2" / "b.wav", 4000, rng)
    _wav(tmp_path / "noise" / "n.wav", 4000, rng, "noise")
    make_dns_manifest(str(tmp_path / "speech"), str(tmp_path / "noise"), tmp_path / "m", dev_fraction=0.0)
    rows = {Path(r["path"]).name: r for r in read_csv_rows(tmp_path / "m" / "speech.csv")}
    assert (rows["a.wav"]["split"], rows["a.wav"]["speaker"]) == ("train", "spk1")
    assert (rows["b.wav"]["split"], rows["b.wav"]["speaker"]) == ("dev", "spk2")


@pytest.fixture
def voicebank(tmp_path, rng):
    root = tmp_path / "vb"
    for sub in ("clean_trainset_wav", "noisy_trainset_wav"):
        (root / sub).mkdir(parents=True)
    for spk in ("p226", "p257"):  # with --dev-fraction 0.5 the stable hash puts p257 in dev
        for k in range(3):
            clean = synth_speech(6000, rng).astype(np.float32)
            noisy = clean + 0.05 * synth_noise(6000, rng, "white").astype(np.float32)
            save_audio(root / "clean_trainset_wav" / f"{spk}_{k:03d}.wav", clean, 16000)
            save_audio(root / "noisy_trainset_wav" / f"{spk}_{k:03d}.wav", noisy, 16000)
    save_audio(root / "noisy_trainset_wav" / "p999_000.wav", clean, 16000)  # no clean partner
    return root


def test_paired_manifest_and_reader(tmp_path, voicebank):
    out = tmp_path / "pairs"
    code = cli_main(["make-manifest", "paired", "--noisy", str(voicebank / "noisy_trainset_wav"),
                     "--clean", str(voicebank / "clean_trainset_wav"), "-o", str(out), "--dev-fraction", "0.5"])
    assert code == 0
    rows = read_csv_rows(out / "pairs.csv")
    assert len(rows) == 6 and {r["speaker"] for r in rows} == {"p226", "p257"}
    assert "p999_000.wav" in (out / "manifest_errors.txt").read_text()
    assert {r["speaker"]: r["split"] for r in rows} == {"p226": "train", "p257": "dev"}
    ds = PairedManifestDataset(out, "train", segment_s=0.25, seed=1)
    a, b = ds[0], ds[0]
    assert a["noisy"].shape == (4000,) and torch.equal(a["noisy"], b["noisy"])  # reproducible per (seed, epoch, i)
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["noisy"], a["noisy"])  # a new crop each epoch
    full = PairedManifestDataset(out, "dev")
    assert full[0]["clean"].shape == (6000,) and full[0]["name"].endswith(".wav")
    with pytest.raises(DataError, match="no pairs for split"):
        PairedManifestDataset(out, "test")


def test_training_on_a_paired_corpus(tmp_path, voicebank, monkeypatch):
    make_paired_manifest(str(voicebank / "noisy_trainset_wav"), str(voicebank / "clean_trainset_wav"), tmp_path / "p",
                         dev_fraction=0.5)
    cfg = load_config(TrainConfig, None, [
        "data.source=paired", f"data.root={tmp_path / 'p'}", "data.segment_s=0.25", "optim.batch_size=3",
        "optim.epochs=1", "optim.warmup_steps=1", "optim.checkpoint_every=0", "threads=1", "device=cpu",
        "model.name=student", "model.args={input_size: 8, hidden: 8, layers: 1}", f"run_dir={tmp_path / 'run'}"])
    with monkeypatch.context() as m:  # the start of a run reads pairs.csv, it walks no folder
        _forbid_walks(m)
        assert isinstance(training_set(cfg.data, "train", 0), PairedManifestDataset)
        assert len(validation_items(cfg)) == 3  # the dev rows of pairs.csv, whole files
        tr = Trainer(cfg, progress=False)
    tr.fit()
    assert (tmp_path / "run" / "best.safetensors").is_file()
