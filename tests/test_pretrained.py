"""The models shipped in mtakd/pretrained: present, small, loadable, the default of enhance()."""
from pathlib import Path

import numpy as np
import torch

import mtakd
from mtakd.checkpoint import load_checkpoint

PRETRAINED = Path(mtakd.__file__).parent / "pretrained"


def test_shipped_models_are_within_their_size_budgets():
    student, teacher = PRETRAINED / "student.safetensors", PRETRAINED / "teacher.safetensors"
    assert student.stat().st_size < 1_000_000
    assert teacher.stat().st_size < 25_000_000
    s_model, s_meta = load_checkpoint(student)[:2]
    t_model, t_meta = load_checkpoint(teacher)[:2]
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert s_meta["model"]["name"] == "student" and t_meta["model"]["name"] == "teacher"
    assert n(t_model) >= 20 * n(s_model)
    assert (PRETRAINED / "MODEL_CARD.md").is_file()


def test_enhance_defaults_to_the_shipped_student():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    x = (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(16000)).astype(np.float32)
    y = mtakd.enhance(x, sr=16000)
    ref = mtakd.enhance(x, model=str(PRETRAINED / "student.safetensors"), sr=16000)
    assert y.shape == x.shape and np.isfinite(y).all()
    np.testing.assert_allclose(y, ref, atol=0)
    assert torch.is_tensor(mtakd.enhance(torch.from_numpy(x), sr=16000))


def test_demo_example_falls_back_to_generated_audio_without_a_corpus(tmp_path, capsys):
    """make demo on a fresh machine (no ../shared/data): the shipped student gets a synthetic example."""
    from mtakd.config import DataConfig
    from mtakd.data import build_devset
    from mtakd.demo import _example

    build_devset(DataConfig(source="synthetic"), tmp_path / "devset", snrs=(0,), per_snr=1, seed=7)
    noisy, clean, what = _example(tmp_path, str(tmp_path / "no_corpus_here"))
    assert noisy.is_file() and clean.is_file() and noisy.parent.parent == tmp_path / "devset"
    assert what == "synthetic speech and noise"
    # a folder that exists but is no corpus: one note, then the same fallback
    (tmp_path / "empty").mkdir()
    assert _example(tmp_path, str(tmp_path / "empty"))[2] == "synthetic speech and noise"
    assert "not usable" in capsys.readouterr().out


def test_demo_says_a_generated_example_does_not_measure_the_shipped_student(tmp_path, capsys):
    """Without a corpus the shipped student's before/after numbers come with a note that the audio
    is generated (a model trained on real speech need not help on it); with none, no note."""
    from mtakd.config import DataConfig
    from mtakd.data import build_devset
    from mtakd.demo import _enhance_examples

    build_devset(DataConfig(source="synthetic"), tmp_path / "devset", snrs=(5,), per_snr=1, seed=7)
    _enhance_examples(tmp_path, PRETRAINED / "student.safetensors", data_root=str(tmp_path / "no_corpus_here"))
    out = capsys.readouterr().out
    assert "shipped student on synthetic speech and noise" in out
    assert out.count("not recorded speech") == 1  # the shipped student's line only, not the demo student's


def test_finetune_recipe_builds_the_shipped_student():
    """configs/student_finetune.yaml starts from pretrained:student, and a warm start refuses a
    model that differs from the checkpoint's: when the shipped student changes shape (v0.12 grew
    it to GRU 2x120), the recipe must follow, or the README's fine-tune command stops working."""
    from mtakd.config import TrainConfig, load_config
    from mtakd.models import build_model, model_args

    cfg = load_config(TrainConfig, Path(__file__).parents[1] / "configs" / "student_finetune.yaml")
    assert cfg.init == "pretrained:student"
    shipped, meta = load_checkpoint(PRETRAINED / "student.safetensors")[:2]
    built = build_model(cfg.model.name, cfg.model.args)
    assert (cfg.model.name, model_args(built)) == (meta["model"]["name"], model_args(shipped))


def test_shipped_look_ahead_student_loads_streams_and_fine_tunes():
    """The opt-in student with one frame of look-ahead (docs/lookahead.md): within the budgets,
    30 ms of stream latency, and the fine-tune recipe builds it with one override."""
    from mtakd.config import TrainConfig, load_config
    from mtakd.models import build_model, model_args
    from mtakd.streaming import StreamingEnhancer

    path = PRETRAINED / "student_lookahead.safetensors"
    assert path.stat().st_size < 1_000_000
    model, meta = load_checkpoint(path)[:2]
    teacher = load_checkpoint(PRETRAINED / "teacher.safetensors")[0]
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert meta["model"]["name"] == "student" and model.cfg.lookahead == 1 and n(teacher) >= 20 * n(model)
    assert StreamingEnhancer(model).delay_samples == 480
    # shipped models by name, like the other verbs: enhance, load_model, the streamer
    x = (0.1 * np.random.default_rng(1).standard_normal(8000)).astype(np.float32)
    np.testing.assert_allclose(mtakd.enhance(x, model="pretrained:student_lookahead", sr=16000),
                               mtakd.enhance(x, model=str(path), sr=16000), atol=0)
    assert mtakd.load_model("pretrained:student_lookahead").cfg.lookahead == 1
    assert StreamingEnhancer("pretrained:student_lookahead").delay_samples == 480
    cfg = load_config(TrainConfig, Path(__file__).parents[1] / "configs" / "student_finetune.yaml",
                      ["init=pretrained:student_lookahead", "model.args.lookahead=1"])
    assert model_args(build_model(cfg.model.name, cfg.model.args)) == model_args(model)
