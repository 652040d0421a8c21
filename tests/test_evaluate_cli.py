"""evaluate() and the training/info/build-devset verbs, in-process through mtakd.cli.main."""
import csv
import math

import pytest

from mtakd.checkpoint import save_checkpoint
from mtakd.cli import main
from mtakd.config import DataConfig
from mtakd.data import build_devset
from mtakd.evaluate import QUALITY_KEYS, evaluate, format_report
from mtakd.models import build_model


@pytest.fixture(scope="module")
def devset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dev") / "devset"
    build_devset(DataConfig(source="synthetic"), root, snrs=(0, 10), per_snr=2, seed=3)
    return root


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory):
    p = tmp_path_factory.mktemp("ck") / "s.safetensors"
    save_checkpoint(p, build_model("student", {"hidden": 8, "input_size": 8}))
    return p


def test_evaluate_noisy_and_model(devset, student_ckpt, tmp_path):
    noisy = evaluate(None, devset, progress=False)
    assert noisy["n_files"] == 4 and set(noisy["summary"]) == set(QUALITY_KEYS)
    assert noisy["summary"]["si_sdr_i"] == pytest.approx(0.0, abs=1e-6)
    assert sorted(noisy["per_snr"]) == [0.0, 10.0]
    assert noisy["per_snr"][10.0]["si_sdr"] > noisy["per_snr"][0.0]["si_sdr"] + 5
    res = evaluate(student_ckpt, devset, tmp_path / "files.csv", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "files.csv")))
    assert len(rows) == 4 and all(math.isfinite(float(r["stoi"])) for r in rows)
    e = res["efficiency"]
    assert e["params"] > 0 and e["macs_per_s"] > 0 and 0 < e["rtf_1thread"] < 1 and e["latency_ms"] == 20
    assert 0 < e["cpu_share_1thread"] <= 1.05  # thread CPU time cannot much exceed the wall time


def test_cli_evaluate_and_info(devset, student_ckpt, capsys):
    assert main(["evaluate", "noisy", str(devset), "--no-efficiency"]) == 0
    assert "PESQ" in capsys.readouterr().out
    assert main(["info", str(student_ckpt)]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "MACs/s" in out and "latency" in out


def test_info_prints_the_learned_task_weights(tmp_path, capsys):
    import torch

    from mtakd.checkpoint import save_checkpoint
    from mtakd.models import build_model

    model = build_model("student", {"input_size": 8, "hidden": 8, "layers": 1})
    p = tmp_path / "s.safetensors"
    # s = log sigma^2: w = exp(-s) / 2 gives w_sup 0.5 and w_kd 1.5, a KD share of 0.75
    save_checkpoint(p, model, aux={"loss.uncertainty.log_vars": torch.tensor([0.0, -math.log(3.0)])})
    assert main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert "learned log sigma^2 (sup, kd[, feat]): 0.000, -1.099" in out
    assert "learned task weights w = exp(-s) / 2: 0.5, 1.5 (KD share w_kd / (w_sup + w_kd) 0.75)" in out


@pytest.mark.parametrize("argv,msg", [
    (["evaluate", "missing.safetensors", "."], "no such checkpoint"),
    (["info", "nothing.safetensors"], "no such checkpoint"),
    (["train-teacher", "optim.lr=fast"], "must be a number"),
    (["train-teacher", "loss.kd=mtakd"], "train-teacher trains without distillation"),
    (["distill", "--kd", "fixed", "loss.unknown=1"], "unknown config key 'loss.unknown'"),
    (["distill", "--kd", "fixed", "data.source=synthetic"], "needs a teacher"),
])
def test_cli_user_errors_are_one_line(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and err.startswith("mtakd: error:") and "\n" not in err


def test_cli_build_devset_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["build-devset", "--synthetic", "-o", str(out), "--snrs", "5", "--per-snr", "1"]) == 0
    assert len(list((out / "noisy").glob("*.wav"))) == 1
    assert main(["build-devset", "--synthetic", "-o", str(out), "--snrs", "5", "--per-snr", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtakd: error:") and str(out) in err
    assert len(list((out / "noisy").glob("*.wav"))) == 1


def test_narrowband_pairs_are_scored_with_pesq_nb(tmp_path, student_ckpt):
    """8 kHz originals are scored at 8 kHz (PESQ-NB), not as upsampled wide-band audio."""
    import numpy as np
    import soundfile as sf

    from mtakd.metrics import pesq_nb
    from mtakd.synth import synth_noise, synth_speech

    rng = np.random.default_rng(1)
    clean = synth_speech(16000, rng, sr=8000).astype(np.float32) * 0.3
    noisy = clean + 0.05 * synth_noise(16000, rng, "white", sr=8000).astype(np.float32)
    for sub, x in (("clean", clean), ("noisy", noisy)):
        (tmp_path / sub).mkdir()
        sf.write(tmp_path / sub / "a.wav", x, 8000)
    res = evaluate(None, tmp_path, tmp_path / "r.csv", progress=False)
    row = list(csv.DictReader(open(tmp_path / "r.csv")))[0]
    assert row["metric_sr"] == "8000"
    # the unprocessed input scored after the 8k -> 16k -> 8k round trip ~ scored directly
    assert res["summary"]["pesq"] == pytest.approx(pesq_nb(clean, noisy, 8000), abs=0.1)


def test_report_names_fractional_snrs_as_they_are():
    """A set mixed at VoiceBank-DEMAND's SNRs (2.5, 7.5 dB) is reported per SNR by its own
    values, not rounded (2.5 once printed as '+2', 7.5 as '+8')."""
    g = {k: 1.0 for k in QUALITY_KEYS}
    text = format_report("m", {"summary": g, "efficiency": None, "n_files": 2, "files": [g, g],
                               "per_snr": {2.5: g, 7.5: g, -5.0: g}})
    assert "SNR +2.5 dB" in text and "SNR +7.5 dB" in text and "SNR -5 dB" in text


def test_report_says_when_the_rtf_was_timed_on_a_busy_host():
    res = {"summary": dict.fromkeys(QUALITY_KEYS, 1.0), "files": [], "per_snr": {}, "n_files": 1,
           "efficiency": {"params": 10, "macs_per_s": 1e6, "rtf_1thread": 0.01, "rtf_default": 0.01,
                          "latency_ms": 20.0, "cpu_share_1thread": 0.97}}
    assert "busy" not in format_report("m", res)
    res["efficiency"]["cpu_share_1thread"] = 0.5
    assert "CPU share 0.50 during the 1-thread timing: the host was busy" in format_report("m", res)
