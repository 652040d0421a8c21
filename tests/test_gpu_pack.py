"""recipes/gpu_pack.py + gpu_stage.sh: the packs carry every training file once, nothing of the
dev split but the validation pairs, and merge back into a corpus the trainer reads."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mtakd.corpus import Corpus
from mtakd.data import PairedDataset

ROOT = Path(__file__).resolve().parents[1]


def _corpus(root: Path) -> None:
    rng = np.random.default_rng(0)
    rows = {"speech": [], "noise": [], "rir": []}
    for split, n in (("train", 12), ("dev", 3)):
        for i in range(n):
            p = f"speech/{split}/{i % 3:04d}/{split}{i}.flac"
            rows["speech"].append([p, split, f"{i % 3:04d}"])
            q = f"noise/{split}/n{i}.flac"
            rows["noise"].append([q, split])
            for rel, secs in ((p, 0.5 + 0.1 * i), (q, 0.5)):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, 0.1 * rng.standard_normal(int(16000 * secs)), 16000)
    (root / "rir").mkdir()
    sf.write(root / "rir" / "r.flac", np.r_[1.0, np.zeros(799)], 16000)
    rows["rir"].append(["rir/r.flac", "train"])
    for kind, head in (("speech", ["path", "split", "speaker"]), ("noise", ["path", "split"]), ("rir", ["path", "split"])):
        with open(root / f"{kind}.csv", "w", newline="") as f:
            csv.writer(f).writerows([head] + rows[kind])


def _devset(root: Path, n: int = 30) -> None:
    for k in ("noisy", "clean"):
        (root / k).mkdir(parents=True)
        for i in range(n):
            sf.write(root / k / f"{i % 5}db_{i:03d}.wav", np.zeros(1600), 16000)


def _pack(data: Path, dev: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "recipes" / "gpu_pack.py"), "--data", str(data),
                           "--devset", str(dev), "--out", str(out), "--mib", "0.06"],
                          capture_output=True, text=True, timeout=120)


def test_packs_hold_each_train_file_once_and_merge_into_a_readable_corpus(tmp_path):
    data, dev, out, g = tmp_path / "data", tmp_path / "dev", tmp_path / "packs", tmp_path / "g"
    _corpus(data)
    _devset(dev)
    r = _pack(data, dev, out)
    assert r.returncode == 0, r.stderr
    packs = sorted(p.name for p in out.iterdir())
    assert packs[0] == "q1" and len(packs) >= 3  # the size limit forced several speech packs
    speech = [p.relative_to(out / q / "data").as_posix() for q in packs[1:]
              for p in (out / q / "data").rglob("*.flac")]
    train = sorted(p.relative_to(data).as_posix() for p in (data / "speech" / "train").rglob("*.flac"))
    assert sorted(speech) == train  # every train utterance, once, and no dev speech
    assert not list((out / "q1" / "data" / "noise").glob("dev"))
    # the validation pairs are the ones valid.max_files=24 picks from the full dev set
    assert sorted(p.name for p in (out / "q1" / "devset" / "noisy").iterdir()) == \
        sorted(PairedDataset(dev, max_files=24).names)
    for q in packs:  # as on the device: one call per pack, merged under $G
        s = subprocess.run(["bash", "-c", f". recipes/gpu_stage.sh {q}"], cwd=ROOT, capture_output=True, text=True,
                           env=dict(os.environ, G=str(g), PACKS=str(out)), timeout=60)
        assert s.returncode == 0, s.stderr
    corpus = Corpus.from_manifests(g / "data", "train")
    assert len(corpus.speech) == 12 and len(corpus.noise) == 12
    for item in corpus.speech + corpus.noise + corpus.rir:
        assert corpus.load(item).size > 0


@pytest.mark.parametrize("stale", ["q1", "q3"])
def test_pack_refuses_to_mix_with_existing_packs(tmp_path, stale):
    data, dev, out = tmp_path / "data", tmp_path / "dev", tmp_path / "packs"
    _corpus(data)
    _devset(dev)
    (out / stale).mkdir(parents=True)
    r = _pack(data, dev, out)
    assert r.returncode != 0 and f"{stale} exist" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == [stale]  # nothing written beside it


def test_pack_bad_input_is_one_line_and_writes_nothing(tmp_path):
    data, dev, out = tmp_path / "data", tmp_path / "dev", tmp_path / "packs"
    _corpus(data)
    r = _pack(data, dev, out)  # no dev set
    assert r.returncode != 0 and "gpu_pack:" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    _devset(dev)
    r = _pack(tmp_path / "not_a_corpus", dev, out)
    assert r.returncode != 0 and "--data must be the corpus root" in r.stderr and not out.exists()


def test_finetune_refuses_to_overwrite_an_earlier_round(tmp_path):
    """A second round on the same machine must not train into the first round's run folders
    (its --init may be there): the script stops before staging or training anything."""
    g = tmp_path / "g"
    (g / "gA").mkdir(parents=True)
    (g / "gA" / "last.safetensors").write_bytes(b"round 1")
    env = {**os.environ, "G": str(g), "OUT": str(tmp_path / "out"), "PACKS": str(tmp_path / "nopacks")}
    r = subprocess.run(["bash", "recipes/gpu_finetune.sh", "60", "q4"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"{g}/gA exists" in r.stdout and "mv " in r.stdout
    assert (g / "gA" / "last.safetensors").read_bytes() == b"round 1"
    assert sorted(p.name for p in g.iterdir()) == ["gA"]  # nothing staged, no probe folders
