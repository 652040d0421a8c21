"""The pure helpers of benchmarks/results.py (benchmarks/results_tables.py) on synthetic
per-file tables: no data, no checkpoints, no torch."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import results_tables as rt  # noqa: E402


def _table(pesq, sdri, snrs=None, prefix="f"):
    snrs = snrs if snrs is not None else [0.0] * len(pesq)
    return {f"{prefix}{i:03d}.wav": {"snr": s, "pesq": p, "si_sdr_i": d, "si_sdr": d + 5.0}
            for i, (p, d, s) in enumerate(zip(pesq, sdri, snrs))}


def test_parse_and_group_run_names():
    assert rt.parse_run_name("d_mtakd_tf_s2") == ("d_mtakd_tf", 2)
    assert rt.parse_run_name("student_mtakd") == ("student_mtakd", None)
    assert rt.parse_run_name("teacher") == ("teacher", None)
    assert rt.parse_run_name("x_s") == ("x_s", None)
    names = ["zz_custom", "d_mtakd_tf_s1", "a_none_s2", "teacher", "d_mtakd_tf_s0", "a_none_s0", "student_mtakd",
             "e_mtakd_gate_s10", "e_mtakd_gate_s2"]
    g = rt.group_runs(names)
    assert list(g) == ["teacher", "a_none", "d_mtakd_tf", "e_mtakd_gate", "student_mtakd", "zz_custom"]
    assert g["d_mtakd_tf"] == {0: "d_mtakd_tf_s0", 1: "d_mtakd_tf_s1"}
    assert list(g["e_mtakd_gate"]) == [2, 10]  # numeric, not lexical, seed order
    assert g["student_mtakd"] == {None: "student_mtakd"}
    with pytest.raises(ValueError):
        rt.group_runs(["a_none_s1", "a_none_s01"])


def test_roles():
    assert [rt.role(v) for v in ["teacher", "a_none", "c_fixed_tf", "d_mtakd_tf", "student_mtakd", "student_none", "zz"]] \
        == ["teacher", "a", "c", "d", "d", "a", None]
    assert rt.find_role(["teacher", "a_none", "d_mtakd_tf"], "d") == "d_mtakd_tf"
    assert rt.find_role(["teacher", "a_none"], "b") is None


def test_seed_stats_is_std_of_seed_means():
    seeds = [_table([1.0, 2.0], [0, 0]), _table([2.0, 3.0], [0, 0]), _table([3.0, float("nan")], [0, 0])]
    mean, std, n = rt.seed_stats(seeds, "pesq")
    # seed means 1.5, 2.5, 3.0 (NaN left out of the third)
    assert n == 3 and mean == pytest.approx(7.0 / 3.0) and std == pytest.approx(np.std([1.5, 2.5, 3.0], ddof=1))
    m1, s1, n1 = rt.seed_stats(seeds[:1], "pesq")
    assert (m1, n1) == (1.5, 1) and math.isnan(s1)
    assert rt.fmt_pm(1.23456, 0.0123, 3) == "1.235 ± 0.012"
    assert rt.fmt_pm(1.5, float("nan"), 2) == "1.50"
    assert rt.fmt_pm(float("nan"), 0.1, 2) == "-"


def test_per_snr_and_average_over_seeds():
    s0 = _table([1.0, 2.0, 3.0], [1, 2, 3], snrs=[0.0, 0.0, 5.0])
    s1 = _table([2.0, 2.0, 4.0], [3, 2, 1], snrs=[0.0, 0.0, 5.0])
    assert rt.per_snr_means([s0, s1], "pesq") == {0.0: pytest.approx(1.75), 5.0: pytest.approx(3.5)}
    s1.pop("f002.wav")
    avg = rt.average_over_seeds([s0, s1])
    assert sorted(avg) == ["f000.wav", "f001.wav"]  # files scored in every seed only
    assert avg["f000.wav"]["pesq"] == pytest.approx(1.5) and avg["f000.wav"]["si_sdr_i"] == pytest.approx(2.0)


def test_paired_test_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.normal(2.0, 0.3, 60)
    x = _table(base + 0.2 + rng.normal(0, 0.05, 60), base)
    y = _table(base, base)
    r = rt.paired_test(x, y, "pesq")
    assert r["n"] == 60 and r["ci_low"] < r["mean_diff"] < r["ci_high"]
    assert 0.15 < r["ci_low"] and r["ci_high"] < 0.25 and r["p"] < 1e-6 and r["wins"] == 60
    same = rt.paired_test(y, y, "pesq")
    assert same["mean_diff"] == 0.0 and math.isnan(same["p"]) and same["wins"] == 0
    # files only in one table and non-finite scores are left out
    x2 = dict(x)
    x2["extra.wav"] = {"snr": 0.0, "pesq": 9.0, "si_sdr_i": 0.0}
    x2["f000.wav"] = {**x["f000.wav"], "pesq": float("nan")}
    assert rt.paired_test(x2, y, "pesq")["n"] == 59
    lines, raw = rt.paired_rows("dev", x, {"a_none": y})
    assert len(lines) == len(raw) == 2 and lines[0].startswith("| dev | (d) - a_none | PESQ-WB | 60 |")


def test_check_targets():
    noisy = [_table([1.5] * 4, [0.0] * 4)]
    dev = {"noisy": noisy,
           "teacher": [_table([2.5] * 4, [10.0] * 4)],
           "a_none": [_table([1.9] * 4, [5.0] * 4), _table([2.0] * 4, [5.5] * 4)],
           "b_fixed": [_table([2.3] * 4, [9.0] * 4), _table([2.35] * 4, [9.2] * 4)],
           "d_mtakd_tf": [_table([2.42] * 4, [9.5] * 4), _table([2.44] * 4, [9.6] * 4)]}
    eff = {"teacher": {"params": 4_000_000, "rtf_1thread": 0.05}, "student": {"params": 150_000, "rtf_1thread": 0.008}}
    res = rt.check_targets(dev, eff)
    status = [r["status"] for r in res]
    # PESQ kept 0.93/1.0 = 93 %; SI-SDRi 9.55/10 = 95.5 %; params 26.7x; RTF 6.25x;
    # vs a: +0.48 PESQ, +4.05 dB; vs b: +0.105 PESQ (spread 0.035), +0.45 dB (spread 0.14)
    assert status == ["PASS", "PASS", "PASS", "FAIL", "PASS", "PASS", "PASS", "PASS"]
    assert "93 %" in res[0]["text"] and "6.2x" in res[3]["text"]
    dev["b_fixed"] = [_table([2.36] * 4, [9.0] * 4), _table([2.44] * 4, [9.2] * 4)]  # margin +0.03 < spread 0.057
    assert rt.check_targets(dev, eff)[6]["status"] == "FAIL"
    # another variant judged as the method: its own numbers, its name on every line
    dev["h_mtakd_tf_sisdr"] = [_table([1.95] * 4, [5.2] * 4), _table([1.96] * 4, [5.3] * 4)]
    res_h = rt.check_targets(dev, eff, method="h_mtakd_tf_sisdr")
    assert [r["status"] for r in res_h][4:6] == ["FAIL", "FAIL"]  # +0.005 PESQ / +0.0 dB vs a: inside the spread
    assert all("(h_mtakd_tf_sisdr)" in r["text"] for i, r in enumerate(res_h[:8]) if i not in (2, 3))
    # ... and the issue's own (d) is still judged on the seed spread, after it
    assert len(res_h) == 12 and res_h[8:] == rt.check_targets(dev, eff)[4:]
    assert all(r["text"].startswith("(d) beats") for r in res_h[8:])
    assert rt.check_targets(dev, eff, method="d_mtakd_tf") == rt.check_targets(dev, eff)
    with pytest.raises(ValueError, match="no such variant"):
        rt.check_targets(dev, eff, method="x_missing")
    del dev["h_mtakd_tf_sisdr"]
    one_seed = {k: v[:1] for k, v in dev.items()}
    res1 = rt.check_targets(one_seed, {})
    assert [r["status"] for r in res1][2:] == ["N/A"] * 6 and all(r["text"] for r in res1)


def test_pick_example_and_tables_render():
    snr_of = {"snr-05_0000.wav": -5.0, "snr+00_0001.wav": 0.0, "snr+00_0000.wav": 0.0}
    assert rt.pick_example(snr_of) == "snr+00_0000.wav"
    assert rt.pick_example({"b.wav": float("nan"), "a.wav": float("nan")}) == "a.wav"
    variants = {"noisy": [_table([1.5, 1.6], [0, 0])], "d_mtakd_tf": [_table([2.0, 2.2], [5, 6]), _table([2.1, 2.3], [6, 7])]}
    lines = rt.metric_table(variants, {"d_mtakd_tf": [0, 1]}, metrics=["pesq", "si_sdr_i"])
    assert lines[2] == "| noisy | - | 1.550 | 0.00 |"
    assert lines[3] == f"| d_mtakd_tf | 0,1 | 2.150 ± {np.std([2.1, 2.2], ddof=1):.3f} | 6.00 ± 0.71 |"
    assert rt.per_snr_table(variants)[2] == "| noisy | 1.55 / 0.0 |"
    eff = {"teacher": {"params": 4_000_000, "macs_per_s": 4e8, "rtf_1thread": 0.04, "rtf_default": 0.03, "latency_ms": float("nan")},
           "student": {"params": 100_000, "macs_per_s": 4e7, "rtf_1thread": 0.008, "rtf_default": 0.006, "latency_ms": 20.0}}
    tab = rt.efficiency_table(eff)
    assert "non-causal" in tab[2] and tab[3].endswith("| 20 |") and tab[4].startswith("| **teacher / student** | 40.0x | 10.0x | 5.0x")
    assert len(tab) == 5  # dicts without a CPU share (older reports): no note
    eff["teacher"]["cpu_share_1thread"], eff["student"]["cpu_share_1thread"] = 0.99, 0.97
    assert _tab_note(rt.efficiency_table(eff)) == "CPU share of the 1-thread timing (thread CPU time / wall time): teacher 0.99, student 0.97 (each had its core)."
    eff["student"]["cpu_share_1thread"] = 0.55  # a busy host: the note says the RTFs are no speed result
    assert "not a speed result" in _tab_note(rt.efficiency_table(eff))


def _tab_note(tab: list[str]) -> str:
    assert tab[-2] == ""
    return tab[-1]


def test_read_scores(tmp_path):
    p = tmp_path / "dev.csv"
    p.write_text("name,snr,pesq,stoi\na.wav,0.0,1.5,0.8\nb.wav,,nan,\n")
    t = rt.read_scores(p)
    assert t["a.wav"] == {"snr": 0.0, "pesq": 1.5, "stoi": 0.8}
    assert all(math.isnan(v) for v in t["b.wav"].values())


def test_per_seed_table_lists_each_run_under_its_seed():
    variants = {"teacher": [_table([2.0], [8.0])],
                "a_none": [_table([1.0, 2.0], [1.0, 3.0]), _table([3.0, 3.0], [4.0, 4.0])],
                "d_mtakd_tf": [_table([2.5, 2.5], [5.0, 6.0])]}
    seeds = {"teacher": [None], "a_none": [0, 2], "d_mtakd_tf": [2]}
    lines = rt.per_seed_table(variants, seeds)
    assert lines[0] == "| system | seed 0 | seed 2 |"
    assert lines[2:] == ["| a_none | 1.500 / 2.00 | 3.000 / 4.00 |", "| d_mtakd_tf | - | 2.500 / 5.50 |"]
    assert rt.per_seed_table({"teacher": variants["teacher"]}, {"teacher": [None]}) == []


def test_describe_names_the_issue_variants_and_the_later_ones():
    assert rt.describe("d_mtakd_tf") == "(d) mtakd + T-F weighting"
    assert "kd_sisdr" in rt.describe("h_mtakd_tf_sisdr") and "0.83" in rt.describe("g_fixed83_tf")
    assert rt.describe("teacher") is None and rt.describe("zz_unknown") is None


def test_paired_section_compares_the_method_with_each_variant_and_skips_tiny_sets():
    rng = np.random.default_rng(0)
    base = rng.uniform(1.5, 2.5, 30)
    per_set = {"dev": {"noisy": [_table(base, np.zeros(30))],
                       "a_none": [_table(base, np.zeros(30)), _table(base + 0.01, np.zeros(30) + 0.1)],
                       "d_mtakd_tf": [_table(base + 0.3, np.full(30, 3.0)), _table(base + 0.31, np.full(30, 3.2))]},
               "vbd": {"noisy": [_table([1.0] * 3, [0.0] * 3)], "a_none": [_table([1.0] * 3, [0.0] * 3)] * 2,
                       "d_mtakd_tf": [_table([1.1] * 3, [1.0] * 3)] * 2}}
    lines, raw = rt.paired_section(per_set, "d_mtakd_tf", "(d)", ["a_none"], min_files=6)
    assert lines[0] == "## Paired per-file comparison: (d) = d_mtakd_tf vs a_none"
    assert "vbd left out: 3 files (fewer than 6)." in lines[2]
    rows = [ln for ln in lines if ln.startswith("| dev |")]
    assert len(rows) == len(raw) == 2 and all(r["set"] == "dev" and r["method"] == "(d)" for r in raw)
    assert raw[0]["mean_diff"] == pytest.approx(0.3) and raw[0]["wins"] == 30 and raw[0]["p"] < 1e-4
    assert rt.paired_section(per_set, "d_mtakd_tf", "(d)", [], min_files=6) == ([], [])
    assert rt.paired_section(per_set, "d_mtakd_tf", "(d)", ["a_none"], min_files=100) == ([], [])


def test_report_adds_a_block_for_each_pair_and_the_pair_parser_refuses_bad_text(tmp_path):
    import argparse

    import results

    assert results._pair("d_x_05:d_x") == ("d_x_05", "d_x")
    for bad in ("d_x", "d_x:", ":d_x", "d_x:d_x"):
        with pytest.raises(argparse.ArgumentTypeError, match="A:B"):
            results._pair(bad)
    base = np.linspace(1.5, 2.5, 20)
    dev = {"noisy": _table(base, np.zeros(20)), "b_fixed_s0": _table(base + 0.1, np.full(20, 2.0)),
           "d_mtakd_tf_s0": _table(base + 0.2, np.full(20, 3.0)),
           "floor01_d_mtakd_tf_s0": _table(base + 0.15, np.full(20, 2.5))}
    groups = rt.group_runs([n for n in dev if n != "noisy"])
    args = argparse.Namespace(method=None, vs=[], pair=[("d_mtakd_tf", "floor01_d_mtakd_tf")], no_figures=True,
                              notes=str(tmp_path / "none.md"), paired="", extra=[])
    lines, data = results.build_report(args, groups, {}, {"dev": dev}, {})
    heads = [ln for ln in lines if ln.startswith("## Paired")]
    assert heads == ["## Paired per-file comparison: (d) = d_mtakd_tf vs b_fixed",
                     "## Paired per-file comparison: (d) = d_mtakd_tf vs floor01_d_mtakd_tf"]
    pair_rows = [r for r in data["paired"] if r["vs"] == "floor01_d_mtakd_tf"]
    assert [round(r["mean_diff"], 6) for r in pair_rows] == [0.05, 0.5]


def test_report_has_a_section_per_extra_set_and_the_set_parser_refuses_bad_names(tmp_path):
    import argparse

    import results

    assert results._named_set("steady=data/devset_steady") == ("steady", "data/devset_steady")
    for bad in ("steady", "steady=", "=x", "dev=x", "vbd=x", "a-b=x"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME=FOLDER"):
            results._named_set(bad)
    base = np.linspace(1.5, 2.5, 40)
    snrs = [2.5] * 20 + [17.5] * 20

    def tabs(shift):
        return {"noisy": _table(base, np.zeros(40), snrs), "a_none_s0": _table(base + shift, np.full(40, 1.0), snrs),
                "d_mtakd_tf_s0": _table(base + 2 * shift, np.full(40, 2.0), snrs)}

    scores = {"dev": tabs(0.1), "steady": tabs(0.2)}
    groups = rt.group_runs(["a_none_s0", "d_mtakd_tf_s0"])
    args = argparse.Namespace(method=None, vs=[], pair=[], no_figures=True, notes=str(tmp_path / "none.md"),
                              paired="", extra=[("steady", "data/devset_steady")])
    lines, data = results.build_report(args, groups, {}, scores, {})
    i = lines.index("## Set `steady`: `data/devset_steady` (40 files at 2.5/17.5 dB)")
    assert "| d_mtakd_tf | 0 | 2.400 | - | - | 7.00 | 2.00 | - | - | - |" in lines[i:i + 8]
    assert "| system | +2.5 dB | +17.5 dB |" in lines[i:]
    steady = [r for r in data["paired"] if r["set"] == "steady" and r["metric"] == "pesq"]
    assert len(steady) == 1 and steady[0]["mean_diff"] == pytest.approx(0.2)
    assert "steady" in data["sets"] and not any("low power" in ln for ln in lines)
    # the seed-spread test runs on the extra set too (one seed each here: N/A, not a pass)
    assert data["spread_extra"]["steady"][0]["status"] == "N/A"
    assert "Seed-spread test on `steady` (means over seeds):" in lines


def test_extra_set_seed_spread_test_passes_and_fails_on_that_sets_numbers(tmp_path):
    import argparse

    import results

    base = np.linspace(1.5, 2.5, 20)

    def tabs(lead):  # the method leads (a) by `lead` PESQ-WB and 1 dB; seeds differ by +-0.01 / 0.1 dB
        t = {"noisy": _table(base, np.zeros(20))}
        for s, e in enumerate((-0.01, 0.0, 0.01)):
            t[f"a_none_s{s}"] = _table(base + 0.1 + e, np.full(20, 1.0 + 10 * e))
            t[f"d_mtakd_tf_s{s}"] = _table(base + 0.1 + lead + e, np.full(20, 2.0 + 10 * e))
        return t

    scores = {"dev": tabs(0.05), "steady": tabs(0.005)}
    groups = rt.group_runs([n for n in scores["dev"] if n != "noisy"])
    args = argparse.Namespace(method=None, vs=[], pair=[], no_figures=True, notes=str(tmp_path / "none.md"),
                              paired="", extra=[("steady", "x")])
    lines, data = results.build_report(args, groups, {}, scores, {})
    steady = data["spread_extra"]["steady"]
    assert len(steady) == 4  # the method against (a) and (b), two metrics
    # within each seed the lead is exactly 0.005 / 1 dB: the paired view shows it in every seed,
    # where the spread test above fails on PESQ-WB
    i = next(k for k, ln in enumerate(lines) if ln.startswith("## Set `steady`"))
    paired = [ln for ln in lines[i:] if ln.startswith("| (d) - a_none |")]
    assert paired == ["| (d) - a_none | PESQ-WB | 0, 1, 2 | +0.005, +0.005, +0.005 | +0.005 ± 0.000 | 3/3 |",
                      "| (d) - a_none | SI-SDRi | 0, 1, 2 | +1.00, +1.00, +1.00 | +1.00 ± 0.00 | 3/3 |"]
    assert [t["status"] for t in steady[:2]] == ["FAIL", "PASS"]  # 0.005 < spread 0.01; 1 dB > 0.1 dB
    assert steady[2]["status"] == "N/A" and "variant missing" in steady[2]["text"]  # no (b)
    # a variant the method is compared with (--vs) gets the same test on the extra set
    for v in scores:
        scores[v] = dict(scores[v], **{f"h_x_s{s}": scores[v][f"a_none_s{s}"] for s in range(3)})
    args.vs = ["h_x", "a_none"]
    lines, data = results.build_report(args, rt.group_runs([n for n in scores["dev"] if n != "noisy"]), {}, scores, {})
    h_lines = [t for t in data["spread_extra"]["steady"] if t["text"].startswith("(h_x) beats a_none")]
    assert len(data["spread_extra"]["steady"]) == 8 and [t["status"] for t in h_lines] == ["FAIL", "FAIL"]
    dev_spread = [t for t in data["targets"] if "seed spread" in t["text"]]
    assert [t["status"] for t in dev_spread[:2]] == ["PASS", "PASS"]
    i = next(k for k, ln in enumerate(lines) if ln.startswith("## Set `steady`: `x` (20 files"))
    assert any(ln.startswith("| d_mtakd_tf |") for ln in lines[i:])
