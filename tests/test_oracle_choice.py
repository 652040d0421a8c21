"""benchmarks/oracle_choice.py: the worth of a perfect per-input choice, net of chance."""
import csv
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import oracle_choice  # noqa: E402


def _write(run: Path, values, metric="si_sdr_i"):
    run.mkdir(parents=True)
    with open(run / "dev.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["name", "snr", "pesq", "si_sdr_i"])
        w.writeheader()
        w.writerows({"name": f"f{i}", "snr": 0.0, "pesq": 2.0, "si_sdr_i": v} for i, v in enumerate(values))


def test_oracle_gain_is_the_better_file_over_the_better_mean():
    x = {"a": {"m": 1.0}, "b": {"m": 3.0}}
    y = {"a": {"m": 2.0}, "b": {"m": 0.0}, "c": {"m": 9.0}}
    assert oracle_choice.oracle_gain(x, y, "m") == pytest.approx((2.0 + 3.0) / 2 - 2.0)
    assert oracle_choice.oracle_gain(x, y, "m", shift=-5.0) == pytest.approx(0.0)  # y far worse: never chosen


def test_complementary_variants_show_an_excess_and_look_alikes_none(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    half = np.arange(n) < n // 2
    for seed in range(3):
        noise = lambda: 0.3 * rng.standard_normal(n)  # noqa: E731
        # A is 1 dB better on the first half of the files, B on the second half
        _write(tmp_path / f"a_s{seed}", 5.0 + np.where(half, 1.0, 0.0) + noise())
        _write(tmp_path / f"b_s{seed}", 5.0 + np.where(half, 0.0, 1.0) + noise())
        _write(tmp_path / f"c_s{seed}", 5.0 + np.where(half, 1.0, 0.0) + noise())
        _write(tmp_path / f"d_s{seed}", 4.0 + np.where(half, 1.0, 0.0) + noise())  # c, 1 dB worse everywhere
    tab = {v: oracle_choice.seed_tables(tmp_path, v, "dev") for v in "abcd"}
    comp = oracle_choice.compare(tab["a"], tab["b"], "si_sdr_i")
    alike = oracle_choice.compare(tab["a"], tab["c"], "si_sdr_i")
    assert comp["seeds"] == 3 and comp["excess"] > 0.3
    assert abs(alike["excess"]) < 0.05 and alike["oracle"] > 0.1  # chance alone: the oracle still gains
    # a uniformly worse variant: the oracle gains less by chance, and the shifted chance figure knows it
    worse = oracle_choice.compare(tab["a"], tab["d"], "si_sdr_i")
    assert worse["oracle"] < alike["oracle"] / 2 and abs(worse["excess"]) < 0.03
    text = "\n".join(oracle_choice.table(tmp_path, [("a", "b")], ["dev"]))
    assert "| a : b | dev | SI-SDRi | 3 |" in text and "| a : b | dev | PESQ-WB | 3 |" in text


def test_one_seed_has_no_chance_figure(tmp_path):
    _write(tmp_path / "a_s0", [1.0, 2.0])
    _write(tmp_path / "b_s0", [2.0, 1.0])
    tab = {v: oracle_choice.seed_tables(tmp_path, v, "dev") for v in "ab"}
    with pytest.raises(SystemExit, match="two seeds"):
        oracle_choice.compare(tab["a"], tab["b"], "si_sdr_i")


def test_cli_reads_pairs_and_rejects_a_pair_without_a_colon(tmp_path, capsys):
    for v in "ab":
        for seed in (0, 1):
            _write(tmp_path / f"{v}_s{seed}", [1.0, 2.0, 3.0])
    assert oracle_choice.main(["--runs", str(tmp_path), "--pair", "a:b"]) == 0
    assert "| a : b | dev | SI-SDRi | 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        oracle_choice.main(["--runs", str(tmp_path), "--pair", "ab"])
    assert "expected A:B" in capsys.readouterr().err
