"""benchmarks/paired_by_snr.py: per-SNR paired differences from results.py's cached scores."""
import csv
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import paired_by_snr  # noqa: E402

FIELDS = ["name", "snr", "pesq", "si_sdr_i"]


def _write(run: Path, rows):
    run.mkdir(parents=True)
    with open(run / "dev.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)


def _rows(offset_by_snr, snrs=(0.0, 10.0), per=6, seed=0):
    rng = np.random.default_rng(seed)
    return [{"name": f"f{s}_{j}", "snr": "" if s is None else s, "pesq": 2.0 + offset_by_snr[s] + 0.001 * rng.standard_normal(),
             "si_sdr_i": 4.0} for s in snrs for j in range(per)]


def test_differences_by_snr_average_seeds_and_find_the_sign(tmp_path):
    for seed in (0, 1):
        _write(tmp_path / f"a_s{seed}", _rows({0.0: 0.1, 10.0: -0.05}, seed=seed))
        _write(tmp_path / f"b_s{seed}", _rows({0.0: 0.0, 10.0: 0.0}, seed=seed + 7))
    _write(tmp_path / "b_s5", _rows({0.0: 9.0, 10.0: 9.0}))  # a seed only b has: ignored
    rows = paired_by_snr.by_snr(paired_by_snr.seed_tables(tmp_path, "a", "dev"),
                                paired_by_snr.seed_tables(tmp_path, "b", "dev"), "pesq")
    assert [s for s, _ in rows] == [0.0, 10.0]
    assert rows[0][1]["mean_diff"] == pytest.approx(0.1, abs=0.003) and rows[1][1]["mean_diff"] == pytest.approx(-0.05, abs=0.003)
    assert rows[0][1]["n"] == 6 and rows[0][1]["p"] < 0.05
    text = paired_by_snr.table(tmp_path, [("a", "b")])
    assert "+0 dB" in text and "+10 dB" in text and "6/6" in text and "0/6" in text
    assert "p nan, 0/6" in text  # SI-SDRi identical: no difference, no test (results.py's convention)


def test_a_set_without_snrs_is_one_group_and_missing_runs_say_what_to_do(tmp_path):
    _write(tmp_path / "a_s0", _rows({None: 0.1}, snrs=(None,)))
    _write(tmp_path / "b_s0", _rows({None: 0.0}, snrs=(None,)))
    assert "| all |" in paired_by_snr.table(tmp_path, [("a", "b")])
    with pytest.raises(SystemExit, match="results.py first"):
        paired_by_snr.seed_tables(tmp_path, "c", "dev")


def test_snr_from_groups_a_set_without_snrs_by_the_snr_measured_from_its_pairs(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(0)
    for sub in ("clean", "noisy"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    for name, snr in (("x.wav", 3.0), ("y.wav", 12.0)):
        clean = 0.1 * rng.standard_normal(8000)
        noise = rng.standard_normal(8000)
        noise *= np.sqrt(np.sum(clean**2) / np.sum(noise**2) / 10 ** (snr / 10))
        sf.write(tmp_path / "set" / "clean" / name, clean, 16000, subtype="FLOAT")
        sf.write(tmp_path / "set" / "noisy" / name, clean + noise, 16000, subtype="FLOAT")
    snr_of = paired_by_snr.measured_snrs(tmp_path / "set")
    assert snr_of == {"x.wav": 3.0, "y.wav": 12.0}
    rows = [{"name": n, "snr": "", "pesq": p, "si_sdr_i": 1.0} for n, p in (("x.wav", 2.1), ("y.wav", 1.9))]
    _write(tmp_path / "runs" / "a_s0", rows)
    _write(tmp_path / "runs" / "b_s0", [dict(r, pesq=2.0) for r in rows])
    text = paired_by_snr.table(tmp_path / "runs", [("a", "b")], snr_of=snr_of)
    assert "| +3 dB | +12 dB |" in text and "+0.100 (p nan, 1/1) | -0.100 (p nan, 0/1)" in text


def test_metric_picks_the_scores_compared(tmp_path, capsys):
    for v, off in (("a", 0.02), ("b", 0.0)):
        rows = _rows({0.0: 0.0, 10.0: 0.0})
        for r in rows:
            r["stoi"] = 0.8 + off
        run = tmp_path / f"{v}_s0"
        run.mkdir(parents=True)
        with open(run / "dev.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS + ["stoi"])
            w.writeheader()
            w.writerows(rows)
    text = paired_by_snr.table(tmp_path, [("a", "b")], metrics=("stoi",))
    assert "| STOI |" in text and "PESQ-WB" not in text and "+0.020" in text
    assert paired_by_snr.main(["--runs", str(tmp_path), "--pair", "a:b", "--metric", "stoi", "--metric", "pesq"]) == 0
    out = capsys.readouterr().out
    assert "| STOI |" in out and "| PESQ-WB |" in out and "SI-SDRi" not in out
    with pytest.raises(SystemExit):
        paired_by_snr.main(["--runs", str(tmp_path), "--pair", "a:b", "--metric", "loudness"])
