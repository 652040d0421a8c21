"""enhance(): paths/arrays/tensors, rates, downmix, chunking; enhance_files and the CLI verb."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from mtakd import enhancement as enh
from mtakd.audio import AudioError, load_audio
from mtakd.batch import enhance_files
from mtakd.checkpoint import CheckpointError, save_checkpoint
from mtakd.cli import main
from mtakd.enhancement import EnhanceWarning, OverlapChunker, enhance
from mtakd.inference import enhance_waveform
from mtakd.models import build_model

SR = 16000


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_model("student", {"hidden": 12, "input_size": 10}).eval()


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(1)
    return build_model("teacher", {"hidden": 8, "input_size": 8, "layers": 2}).eval()


@pytest.fixture
def ckpt(student, tmp_path):
    p = tmp_path / "student.safetensors"
    save_checkpoint(p, student)
    return p


def _signal(n, seed=0, channels=None):
    rng = np.random.default_rng(seed)
    shape = (n,) if channels is None else (n, channels)
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)


def _offline(model, x):
    return enhance_waveform(model, torch.from_numpy(x)).numpy()


# ----------------------------------------------------------------------------- enhance()
def test_path_array_tensor_agree(tmp_path, ckpt):
    x = _signal(22050)
    sf.write(tmp_path / "a.wav", x, 44100, subtype="FLOAT")
    y_path = enhance(tmp_path / "a.wav", model=ckpt)
    y_arr = enhance(x, model=ckpt, sr=44100)
    y_ten = enhance(torch.from_numpy(x), model=str(ckpt), sr=44100)
    assert isinstance(y_path, np.ndarray) and isinstance(y_ten, torch.Tensor)
    assert y_path.shape == y_arr.shape == tuple(y_ten.shape) == (22050,)
    assert np.abs(y_path - y_arr).max() <= 1e-5
    assert np.abs(y_ten.numpy() - y_arr).max() <= 1e-6


@pytest.mark.parametrize("rate", [8000, 44100])
def test_other_rates_come_back_at_the_input_rate_and_length(tmp_path, student, rate):
    x = _signal(rate // 2 + 13)
    sf.write(tmp_path / "a.wav", x, rate, subtype="PCM_16")
    assert enhance(tmp_path / "a.wav", model=student).shape == x.shape
    y = enhance(x, model=student, sr=rate)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.abs(y).max() > 0


def test_16k_array_equals_offline(student):
    x = _signal(16037)
    assert np.abs(enhance(x, model=student) - _offline(student, x)).max() <= 1e-5


def test_multichannel_is_downmixed_with_a_warning(tmp_path, student):
    x = _signal(8000, channels=2)
    ref = enhance(x.mean(axis=1), model=student)
    with pytest.warns(EnhanceWarning, match="2 channels"):
        y = enhance(x, model=student)  # numpy: (samples, channels)
    assert np.abs(y - ref).max() <= 1e-6
    with pytest.warns(EnhanceWarning, match="2 channels"):
        yt = enhance(torch.from_numpy(x.T.copy()), model=student)  # tensor: (channels, samples)
    assert np.abs(yt.numpy() - ref).max() <= 1e-6
    sf.write(tmp_path / "st.wav", x, SR, subtype="FLOAT")
    with pytest.warns(EnhanceWarning, match="2 channels"):
        yf = enhance(tmp_path / "st.wav", model=student)
    assert np.abs(yf - ref).max() <= 1e-5


def test_file_in_small_blocks_equals_unchunked_student(tmp_path, student, monkeypatch):
    x = _signal(24011)
    sf.write(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    monkeypatch.setattr(enh, "BLOCK_S", 0.1234)  # ~20 blocks, not a multiple of the hop
    y = enhance(tmp_path / "a.wav", model=student)
    assert np.abs(y - _offline(student, load_audio(tmp_path / "a.wav")[0])).max() <= 1e-5


def test_teacher_overlapping_chunks_close_to_unchunked(teacher):
    x = _signal(3 * SR + 77)
    ref = _offline(teacher, x)
    fn = lambda s: _offline(teacher, s)  # noqa: E731
    ch = OverlapChunker(fn, chunk=SR, overlap=SR // 5)
    y = np.concatenate([ch.feed(x[i : i + 5000]) for i in range(0, x.size, 5000)] + [ch.flush()])
    assert y.shape == ref.shape
    err = np.sum((y - ref) ** 2) / np.sum(ref**2)
    assert 0 < err < 1e-2  # close, not exact: chunks see no context beyond their edges


def test_overlap_chunker_bookkeeping_is_exact_for_pointwise_functions():
    x = _signal(10007)
    for sizes in ([10007], [1, 999, 3], [4000]):
        ch = OverlapChunker(lambda s: 2 * s, chunk=1000, overlap=100)
        outs, i, j = [], 0, 0
        while i < x.size:
            outs.append(ch.feed(x[i : i + sizes[j % len(sizes)]]))
            i, j = i + sizes[j % len(sizes)], j + 1
        y = np.concatenate(outs + [ch.flush()])
        assert y.shape == x.shape and np.abs(y - 2 * x).max() <= 1e-6


def test_teacher_through_enhance_uses_chunks(teacher, monkeypatch):
    monkeypatch.setattr(enh, "OFFLINE_CHUNK_S", 0.5)
    monkeypatch.setattr(enh, "OFFLINE_OVERLAP_S", 0.1)
    x = _signal(SR + 5)
    y = enhance(x, model=teacher)
    assert y.shape == x.shape and np.abs(y - _offline(teacher, x)).max() > 0


def test_no_shipped_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(enh, "DEFAULT_MODEL", tmp_path / "pretrained" / "student.safetensors")
    with pytest.raises(CheckpointError, match="no model is shipped.*--model"):
        enhance(_signal(100))


def test_models_are_cached_per_path(ckpt):
    assert enh.get_engine(ckpt) is enh.get_engine(str(ckpt))


def test_onnxruntime_backend_matches_torch(student):
    pytest.importorskip("onnxruntime")
    x = _signal(5000)
    assert np.abs(enhance(x, model=student, backend="onnxruntime") - enhance(x, model=student)).max() <= 1e-4


def test_files_on_onnxruntime_run_several_hops_per_call(ckpt, tmp_path, monkeypatch):
    """Files and arrays need no low latency: a checkpoint exported for them runs FILE_HOPS
    frames per onnxruntime call (3x less CPU); streams keep one hop (20 ms)."""
    pytest.importorskip("onnxruntime")
    import mtakd.batch
    from mtakd.stream_cli import make_streamer

    assert enh.FILE_HOPS > 1
    hops, real = [], enh.get_engine

    def spy(model=None, backend="torch", hops_=1):  # callers pass hops positionally
        engine = real(model, backend, hops_)
        hops.append(engine.stream().hops)
        return engine

    monkeypatch.setattr(enh, "get_engine", spy)
    monkeypatch.setattr(mtakd.batch, "get_engine", spy)
    x = _signal(SR + 77)  # not a whole number of groups: flush pads the last one
    y = enhance(x, model=ckpt, backend="onnxruntime")
    assert np.abs(y - enhance(x, model=ckpt)).max() <= 1e-4
    sf.write(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    assert np.abs(enhance(tmp_path / "a.wav", model=ckpt, backend="onnxruntime") - y).max() <= 1e-6
    assert enhance_files([tmp_path / "a.wav"], tmp_path / "out", model=ckpt, backend="onnxruntime").failed == []
    # enhance (ort, torch: one hop), enhance of a path, then enhance_files (it asks again per file)
    assert len(hops) > 3 and hops == [enh.FILE_HOPS, 1] + [enh.FILE_HOPS] * (len(hops) - 2)
    assert make_streamer(str(ckpt), "onnxruntime").hops == 1


def test_bad_inputs_raise(student):
    with pytest.raises(ValueError, match="NaN"):
        enhance(np.array([0.1, np.nan], np.float32), model=student)
    with pytest.raises(ValueError, match="empty"):
        enhance(np.zeros(0, np.float32), model=student)
    with pytest.raises(ValueError, match="shape"):
        enhance(np.zeros((2, 2, 2), np.float32), model=student)


# ----------------------------------------------------------------------------- enhance_files
def _tree(root, rates=(SR,)):
    (root / "sub").mkdir(parents=True)
    sf.write(root / "a.wav", _signal(4000, 1), rates[0], subtype="PCM_16")
    sf.write(root / "sub" / "b.flac", _signal(3000, 2), rates[-1], subtype="PCM_16")


def test_batch_keeps_structure_rate_and_skips_existing(tmp_path, ckpt):
    _tree(tmp_path / "in", rates=(SR, 44100))
    out = tmp_path / "out"
    s = enhance_files([tmp_path / "in"], out, model=ckpt)
    assert s.ok and len(s.enhanced) == 2 and str(s) == "2 enhanced, 0 failed"
    info = sf.info(out / "sub" / "b.wav")
    assert (info.samplerate, info.frames, info.subtype) == (44100, 3000, "PCM_16")
    assert sf.info(out / "a.wav").frames == 4000
    before = (out / "a.wav").read_bytes()
    s2 = enhance_files([tmp_path / "in"], out, model=ckpt)
    assert len(s2.skipped) == 2 and not s2.enhanced
    s3 = enhance_files([tmp_path / "in" / "a.wav"], out, model=ckpt, overwrite=True)
    assert len(s3.enhanced) == 1 and (out / "a.wav").read_bytes() == before
    assert not [p for p in out.rglob(".*")]  # no temporary files left


def test_batch_continues_past_bad_files(tmp_path, ckpt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "good.wav", _signal(3000), SR, subtype="PCM_16")
    (d / "garbage.wav").write_bytes(b"this is not audio at all" * 10)
    (d / "empty.wav").write_bytes(b"")
    nan = _signal(3000)
    nan[1500] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(d / "silence.wav", np.zeros(2000, np.float32), SR, subtype="PCM_16")
    (tmp_path / "notes.txt").write_text("hi")
    s = enhance_files([d, tmp_path / "notes.txt", tmp_path / "missing.wav"], tmp_path / "out", model=ckpt)
    assert sorted(p.name for p, _ in s.enhanced) == ["good.wav", "silence.wav"]
    failed = {p.rsplit("/", 1)[-1]: m for p, m in s.failed}
    assert sorted(failed) == ["empty.wav", "garbage.wav", "missing.wav", "nan.wav", "notes.txt"]
    assert all(name in m and "\n" not in m for name, m in failed.items())
    assert any("silence" in w for w in s.warnings)
    y, _ = load_audio(tmp_path / "out" / "silence.wav")
    assert not np.any(y)
    assert not (tmp_path / "out" / "nan.wav").exists()  # a failure leaves no partial output

    code = main(["enhance", str(d), "-o", str(tmp_path / "out2"), "--model", str(ckpt)])
    cap = capsys.readouterr()
    assert code == 1
    assert "2 enhanced, 3 failed" in cap.out
    errors = [line for line in cap.err.splitlines() if line.startswith("mtakd: error:")]
    assert len(errors) == 3 and any("garbage.wav" in e for e in errors)


def test_never_overwrites_an_input(tmp_path, ckpt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "a.wav", _signal(2000), SR, subtype="PCM_16")
    original = (d / "a.wav").read_bytes()
    for overwrite in (False, True):
        with pytest.raises(AudioError, match="overwrite an input"):
            enhance_files([d], d, model=ckpt, overwrite=overwrite)
    code = main(["enhance", str(d), "-o", str(d), "--model", str(ckpt), "--overwrite"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("mtakd: error:") and "\n" not in err
    assert (d / "a.wav").read_bytes() == original


def test_same_folder_allowed_when_names_cannot_collide(tmp_path, ckpt):
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "a.flac", _signal(2000), SR, subtype="PCM_16")
    s = enhance_files([d], d, model=ckpt)
    assert s.ok and (d / "a.wav").is_file()


def test_output_folder_inside_input_folder_is_not_reenhanced(tmp_path, ckpt):
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "a.wav", _signal(2000), SR, subtype="PCM_16")
    enhance_files([d], d / "enhanced", model=ckpt)
    s = enhance_files([d], d / "enhanced", model=ckpt, overwrite=True)
    assert [p.name for p, _ in s.enhanced] == ["a.wav"] and not (d / "enhanced" / "enhanced").exists()


def test_colliding_output_names_fail_not_overwrite(tmp_path, ckpt):
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "a.wav", _signal(2000, 1), SR, subtype="PCM_16")
    sf.write(d / "a.flac", _signal(2000, 2), SR, subtype="PCM_16")
    s = enhance_files([d], tmp_path / "out", model=ckpt)
    assert len(s.enhanced) == 1 and len(s.failed) == 1 and "already used" in s.failed[0][1]


def test_cli_one_line_errors(tmp_path, capsys, monkeypatch):
    sf.write(tmp_path / "a.wav", _signal(2000), SR, subtype="PCM_16")
    code = main(["enhance", str(tmp_path / "a.wav"), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "nope.safetensors")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("mtakd: error:") and "nope.safetensors" in err and "\n" not in err
    monkeypatch.setattr(enh, "DEFAULT_MODEL", tmp_path / "missing.safetensors")
    assert main(["enhance", str(tmp_path / "a.wav"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no model is shipped" in err and "--model" in err and "\n" not in err
    with pytest.raises(SystemExit) as e:
        main(["enhance", str(tmp_path / "a.wav")])  # -o missing: argparse usage error
    assert e.value.code == 2


def test_cli_success(tmp_path, ckpt, capsys):
    sf.write(tmp_path / "a.wav", _signal(2000), 22050, subtype="PCM_16")
    assert main(["enhance", str(tmp_path / "a.wav"), "-o", str(tmp_path / "out"), "--model", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "[1/1]" in out and "1 enhanced, 0 failed" in out
    assert sf.info(tmp_path / "out" / "a.wav").samplerate == 22050


def test_files_go_through_the_model_in_bounded_blocks(tmp_path, student, monkeypatch):
    """What bounds memory for long files: the engine never sees more than one read block."""
    x = _signal(48000 * 2)  # 2 s at 48 kHz
    sf.write(tmp_path / "a.wav", x, 48000, subtype="PCM_16")
    monkeypatch.setattr(enh, "BLOCK_S", 0.25)
    engine = enh.get_engine(student)
    sizes = []

    class Spy:
        def __init__(self):
            self.inner = engine._make()

        def feed(self, b):
            sizes.append(len(b))
            return self.inner.feed(b)

        def flush(self):
            return self.inner.flush()

    monkeypatch.setattr(engine, "stream", Spy)
    y = enhance(tmp_path / "a.wav", model=engine)
    assert y.shape == x.shape and len(sizes) >= 8 and max(sizes) <= 0.25 * SR


def test_offline_onnx_model_through_enhance(tmp_path, teacher, monkeypatch):
    pytest.importorskip("onnxruntime")
    from mtakd.export import export_onnx

    path = export_onnx(teacher, tmp_path / "t.onnx", kind="offline").path
    monkeypatch.setattr(enh, "OFFLINE_CHUNK_S", 0.5)
    monkeypatch.setattr(enh, "OFFLINE_OVERLAP_S", 0.1)
    x = _signal(SR + 99)
    y_ort = enhance(x, model=path, backend="onnxruntime")
    assert np.abs(y_ort - enhance(x, model=teacher)).max() <= 1e-4
