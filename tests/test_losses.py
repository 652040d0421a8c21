import math

import pytest
import torch

from mtakd.config import ConfigError, LossConfig
from mtakd.losses import (CompressedSpectralLoss, FeatureKD, MultiTaskLoss, TeacherGate, TFWeight,
                          UncertaintyWeighting, si_sdr_loss)


def _spec(*shape):
    return torch.randn(*shape) if shape else torch.randn(2, 2, 10, 161)


def test_spectral_loss_optimum_and_positivity():
    loss = CompressedSpectralLoss()
    s = _spec()
    assert loss(s, s).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(s + 0.1 * _spec(), s).item() > 0
    w = torch.rand(2, 10, 161)
    assert loss(s, s, w).item() == pytest.approx(0.0, abs=1e-7)


def test_spectral_loss_shape_errors():
    loss = CompressedSpectralLoss()
    with pytest.raises(ValueError, match="shapes differ"):
        loss(_spec(2, 2, 10, 161), _spec(2, 2, 9, 161))
    with pytest.raises(ValueError, match="batch, 2, frames"):
        loss(_spec(2, 3, 10, 161), _spec(2, 3, 10, 161))
    with pytest.raises(ValueError, match="weight shape"):
        loss(_spec(), _spec(), torch.ones(2, 10, 160))
    with pytest.raises(ConfigError):
        CompressedSpectralLoss(power=0.0)


def test_spectral_gradients_finite_at_zero():
    est = torch.zeros(1, 2, 4, 161, requires_grad=True)
    CompressedSpectralLoss()(est, _spec(1, 2, 4, 161)).backward()
    assert torch.isfinite(est.grad).all()


def test_tf_weight_contract():
    clean, noise = _spec(), _spec()
    noise[:, :, :, :80] *= 0.01  # low band speech-dominated
    noise[:, :, :, 80:] *= 10.0  # high band noise-dominated
    w = TFWeight(gamma=1.0, floor=0.1)(clean, clean + noise)
    assert w.shape == (2, 10, 161)
    assert torch.allclose(w.mean(dim=(1, 2)), torch.ones(2), atol=1e-5)
    assert (w >= 0).all()
    assert w[:, :, :80].mean() > 3 * w[:, :, 80:].mean()
    flat = TFWeight(gamma=0.0)(clean, clean + noise)
    assert torch.allclose(flat, torch.ones_like(flat))
    # identical clean and noisy (no noise): every unit is speech, weights uniform
    assert torch.allclose(TFWeight(gamma=2.0)(clean, clean), torch.ones(2, 10, 161), atol=1e-4)
    with pytest.raises(ValueError):
        TFWeight()(clean, clean[:, :, :5])


def test_tf_weight_snr_ramp():
    """The ramp's floor follows the utterance SNR: uniform below lo, the plain weighting above hi."""
    clean = _spec()
    noise = _spec()
    noise[:, :, :, :80] *= 0.01  # the same split as above: low band speech, high band noise
    noise[:, :, :, 80:] *= 10.0
    noisy = clean + noise
    plain = TFWeight(gamma=1.0, floor=0.1)
    snr = 10 * torch.log10(clean.pow(2).sum(dim=(1, 2, 3)) / noise.pow(2).sum(dim=(1, 2, 3)))
    # ramp entirely above the utterances' SNR: uniform weights (floor 1)
    above = TFWeight(gamma=1.0, floor=0.1, snr_ramp=(float(snr.max()) + 1, float(snr.max()) + 11))
    assert torch.allclose(above(clean, noisy), torch.ones(2, 10, 161), atol=1e-5)
    # ramp entirely below: exactly the plain weighting
    below = TFWeight(gamma=1.0, floor=0.1, snr_ramp=(float(snr.min()) - 11, float(snr.min()) - 1))
    assert torch.allclose(below(clean, noisy), plain(clean, noisy), atol=1e-6)
    # halfway up the ramp the floor is halfway between 0.1 and 1, per utterance
    mid = TFWeight(gamma=1.0, floor=0.1, snr_ramp=(float(snr[0]) - 5, float(snr[0]) + 5))
    assert mid.utterance_floor(clean, noisy)[0].item() == pytest.approx(0.55, abs=1e-3)
    w = mid(clean, noisy)
    assert torch.allclose(w.mean(dim=(1, 2)), torch.ones(2), atol=1e-5)
    contrast = lambda m: (m[:, :, :80].mean() / m[:, :, 80:].mean()).item()  # noqa: E731
    assert 1.0 < contrast(w[:1]) < contrast(plain(clean, noisy)[:1])
    # half precision: the utterance's total power (~1e8 here) overflows float16, the floor does not
    big_c, big_n = (100 * clean).half(), (100 * noisy).half()
    half_floor = mid.utterance_floor(big_c, big_n)
    assert half_floor.dtype == torch.float16 and torch.isfinite(half_floor).all()
    assert half_floor[0].item() == pytest.approx(0.55, abs=1e-2)
    w_half = mid(big_c, big_n)
    assert w_half.dtype == torch.float16 and torch.allclose(w_half.float(), mid(100 * clean, 100 * noisy), atol=1e-2)
    for bad in [(5.0, 5.0), (10.0, 0.0), (1.0,)]:
        with pytest.raises(ConfigError, match="tf_snr_ramp"):
            TFWeight(snr_ramp=bad)


def test_multitask_loss_passes_the_ramp_and_checks_it():
    cfg = LossConfig(kd="mtakd", tf_weight=True, tf_snr_ramp=[0.0, 10.0])
    assert MultiTaskLoss(cfg).tf_weight.snr_ramp == (0.0, 10.0)
    assert MultiTaskLoss(LossConfig(tf_weight=True)).tf_weight.snr_ramp is None
    with pytest.raises(ConfigError, match="tf_snr_ramp"):
        MultiTaskLoss(LossConfig(tf_weight=False, tf_snr_ramp=[3.0, 1.0]))


def test_gate_downweights_unreliable_units():
    err = torch.ones(1, 10, 161) * 0.1
    err[:, :, :10] = 5.0
    g = TeacherGate(tau=1.0)(err)
    assert g[:, :, :10].max() < g[:, :, 10:].min()
    assert g.mean().item() == pytest.approx(1.0, abs=1e-5)


def test_uncertainty_weighting_formula_and_gradients():
    uw = UncertaintyWeighting(["sup", "kd"], init_log_var=0.3)
    l1 = torch.tensor(0.5, requires_grad=True)
    l2 = torch.tensor(2.0, requires_grad=True)
    total, info = uw({"sup": l1, "kd": l2})
    s = 0.3
    expected = 0.5 * torch.exp(torch.tensor(-s)) * (0.5 + 2.0) + s
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    total.backward()
    assert uw.log_vars.grad is not None and torch.isfinite(uw.log_vars.grad).all()
    assert (uw.log_vars.grad != 0).all()
    assert set(info) == {"w_sup", "w_kd", "logvar_sup", "logvar_kd"}
    with pytest.raises(ValueError, match="missing"):
        uw({"sup": l1})


def test_uncertainty_optimum_is_sigma2_equal_loss():
    """Minimising over s alone drives exp(s) to the task loss: the larger loss gets the smaller weight."""
    uw = UncertaintyWeighting(["a", "b"])
    opt = torch.optim.SGD(uw.parameters(), lr=0.5)
    for _ in range(300):
        total, _ = uw({"a": torch.tensor(0.2), "b": torch.tensor(1.5)})
        opt.zero_grad()
        total.backward()
        opt.step()
    assert torch.allclose(uw.log_vars.exp(), torch.tensor([0.2, 1.5]), rtol=1e-2)


@pytest.mark.parametrize("kd", ["none", "fixed", "mtakd"])
@pytest.mark.parametrize("tf", [False, True])
def test_multitask_modes(kd, tf):
    cfg = LossConfig(kd=kd, tf_weight=tf, gate=True, feature_kd=True, sisdr_weight=0.5)
    mt = MultiTaskLoss(cfg, student_dim=6, teacher_dim=9)
    clean, noisy = _spec(), _spec()
    est = (clean + 0.1 * _spec()).requires_grad_()
    teacher = clean + 0.05 * _spec()
    h_s, h_t = torch.randn(2, 10, 6, requires_grad=True), torch.randn(2, 10, 9)
    wav_e, wav_c = torch.randn(2, 800, requires_grad=True), torch.randn(2, 800)
    out = mt(est, clean, noisy, teacher=teacher, h_s=h_s, h_t=h_t, est_wav=wav_e, clean_wav=wav_c)
    assert {"loss", "sup", "sisdr"} <= set(out)
    assert ("kd" in out) == (kd != "none") and ("feat" in out) == (kd != "none")
    assert ("w_sup" in out) == (kd == "mtakd")
    out["loss"].backward()
    assert torch.isfinite(est.grad).all()
    if kd == "mtakd":
        assert mt.uncertainty.log_vars.grad is not None and (mt.uncertainty.log_vars.grad != 0).all()
        assert mt.uncertainty.names == ["sup", "kd", "feat"]
    if kd != "none":
        assert mt.feature.proj.weight.grad is not None


def test_multitask_optimum_when_student_equals_teacher_equals_clean():
    mt = MultiTaskLoss(LossConfig(kd="fixed", tf_weight=True, gate=True))
    clean = _spec()
    out = mt(clean, clean, clean + _spec(), teacher=clean)
    assert out["sup"].item() == pytest.approx(0, abs=1e-7) and out["kd"].item() == pytest.approx(0, abs=1e-7)


def test_multitask_config_errors():
    with pytest.raises(ConfigError, match="loss.kd"):
        MultiTaskLoss(LossConfig(kd="adaptive"))
    with pytest.raises(ConfigError, match="alpha"):
        MultiTaskLoss(LossConfig(kd="fixed", alpha=1.5))
    with pytest.raises(ConfigError, match="hidden sizes"):
        MultiTaskLoss(LossConfig(kd="mtakd", feature_kd=True))
    mt = MultiTaskLoss(LossConfig(kd="mtakd"))
    with pytest.raises(ValueError, match="teacher"):
        mt(_spec(), _spec(), _spec())


def test_feature_kd_and_sisdr():
    fk = FeatureKD(4, 6)
    with pytest.raises(ValueError):
        fk(torch.randn(1, 5, 4), torch.randn(1, 6, 6))
    x = torch.randn(2, 1000)
    assert si_sdr_loss(x, x).item() < -60
    y = x + 0.3 * torch.randn(2, 1000)
    assert si_sdr_loss(3 * y, x).item() == pytest.approx(si_sdr_loss(y, x).item(), abs=1e-3)  # scale-invariant
    assert -12 < si_sdr_loss(y, x).item() < -8  # ~10.5 dB SNR


@pytest.mark.parametrize("kd", ["none", "fixed", "mtakd"])
def test_sisdr_takes_the_supervised_task_weight(kd):
    """The SI-SDR term is part of the supervised task: its share of the total equals the
    supervised weight (1, 1 - alpha, w_sup) and it never pulls on the learned log-variances."""
    torch.manual_seed(0)
    est, clean, noisy, teacher = _spec(), _spec(), _spec(), _spec()
    ew, cw = torch.randn(2, 800), torch.randn(2, 800)
    base = LossConfig(kd=kd, alpha=0.3, init_log_var=-1.0)
    with_sisdr = LossConfig(kd=kd, alpha=0.3, init_log_var=-1.0, sisdr_weight=2.0)
    a = MultiTaskLoss(base)(est, clean, noisy, teacher)
    m = MultiTaskLoss(with_sisdr)
    b = m(est, clean, noisy, teacher, est_wav=ew, clean_wav=cw)
    expected_w = {"none": 1.0, "fixed": 0.7, "mtakd": 0.5 * math.exp(1.0)}[kd]
    extra = (b["loss"] - a["loss"]).item()
    assert extra == pytest.approx(expected_w * 2.0 * b["sisdr"].item() / 100.0, rel=1e-5)
    if kd == "mtakd":
        b["loss"].backward()
        plain = MultiTaskLoss(base)
        plain(est, clean, noisy, teacher)["loss"].backward()
        assert torch.allclose(m.uncertainty.log_vars.grad, plain.uncertainty.log_vars.grad)


def test_teacher_error_bounds_the_distillation_weight():
    """loss.kd_teacher_error: sigma_kd^2 -> L_kd + L_T. The student's gradients are unchanged,
    the log-variance optimum moves to log(L_kd + L_T), and a student that imitates the teacher
    perfectly (L_kd = 0) no longer drives w_kd to infinity."""
    torch.manual_seed(0)
    clean, noisy = _spec(), _spec()
    teacher = clean + 0.5 * torch.randn_like(clean)  # a teacher that is wrong everywhere
    base = LossConfig(kd="mtakd", tf_weight=True)
    with_err = LossConfig(kd="mtakd", tf_weight=True, kd_teacher_error=True)
    grads = []
    for cfg in (base, with_err):
        est = teacher.clone().requires_grad_(True)  # the student imitates the teacher exactly
        m = MultiTaskLoss(cfg)
        out = m(est, clean, noisy, teacher)
        out["loss"].backward()
        grads.append((est.grad.clone(), m.uncertainty.log_vars.grad.clone(), out))
    assert torch.allclose(grads[0][0], grads[1][0])  # same pull on the network
    out = grads[1][2]
    assert out["kd"].item() == 0.0 and out["teacher_err"].item() > 0.05
    # d total / d s_kd = 0.5 (1 - exp(-s_kd) (L_kd + L_T)): with L_kd = 0 only L_T keeps it finite
    s_opt = math.log(out["kd"].item() + out["teacher_err"].item())
    m = MultiTaskLoss(with_err)
    with torch.no_grad():
        m.uncertainty.log_vars[1] = s_opt
    m(teacher, clean, noisy, teacher)["loss"].backward()
    assert abs(m.uncertainty.log_vars.grad[1].item()) < 1e-6
    # at s_kd = 0 (w_kd = 0.5) the gradient is 0.5 (1 - L): without the term, L_kd = 0 pushes
    # s_kd down (w_kd up) at full strength, 0.5; with it the push is weaker by 0.5 * L_T
    assert grads[0][1][1].item() == pytest.approx(0.5)
    assert grads[1][1][1].item() == pytest.approx(0.5 - 0.5 * out["teacher_err"].item(), abs=1e-6)
    with pytest.raises(ConfigError, match="kd=mtakd"):
        MultiTaskLoss(LossConfig(kd="fixed", kd_teacher_error=True))


@pytest.mark.parametrize("kd", ["fixed", "mtakd"])
def test_kd_sisdr_gives_both_tasks_the_same_composite_loss(kd):
    """loss.kd_sisdr: the distillation task gets the SI-SDR term against the teacher's waveform
    on its own weight (alpha or w_kd), so with a teacher that equals the truth the SI-SDR share
    of the total is the sum of both task weights: as large as without distillation, whatever
    share the tasks settle at. It never pulls on the learned log-variances."""
    torch.manual_seed(0)
    est, clean, noisy, teacher = _spec(), _spec(), _spec(), _spec()
    ew, cw, tw = torch.randn(2, 800), torch.randn(2, 800), torch.randn(2, 800)
    kw = dict(kd=kd, alpha=0.3, init_log_var=-1.0, sisdr_weight=2.0)
    plain = MultiTaskLoss(LossConfig(**kw))
    m = MultiTaskLoss(LossConfig(**kw, kd_sisdr=True))
    a = plain(est, clean, noisy, teacher, est_wav=ew, clean_wav=cw)
    b = m(est, clean, noisy, teacher, est_wav=ew, clean_wav=cw, teacher_wav=tw)
    w_kd = {"fixed": 0.3, "mtakd": 0.5 * math.exp(1.0)}[kd]
    assert b["kd_sisdr"].item() == pytest.approx(si_sdr_loss(ew, tw).item())
    assert b["kd_sisdr"].item() != pytest.approx(b["sisdr"].item())
    assert (b["loss"] - a["loss"]).item() == pytest.approx(w_kd * 2.0 * b["kd_sisdr"].item() / 100.0, rel=1e-5)
    # a teacher equal to the truth: SI-SDR enters on w_sup (in a) + w_kd (added here), i.e. at
    # the full weight it has without distillation when the weights sum to 1 (fixed)
    c = m(est, clean, noisy, teacher, est_wav=ew, clean_wav=cw, teacher_wav=cw)
    assert c["kd_sisdr"].item() == pytest.approx(c["sisdr"].item())
    assert (c["loss"] - a["loss"]).item() == pytest.approx(w_kd * 2.0 * c["sisdr"].item() / 100.0, rel=1e-5)
    if kd == "mtakd":
        b["loss"].backward()
        plain(est, clean, noisy, teacher, est_wav=ew, clean_wav=cw)["loss"].backward()
        assert torch.allclose(m.uncertainty.log_vars.grad, plain.uncertainty.log_vars.grad)
    with pytest.raises(ValueError, match="teacher's waveform"):
        m(est, clean, noisy, teacher, est_wav=ew, clean_wav=cw)


def test_kd_sisdr_config_errors_and_no_op_without_distillation():
    with pytest.raises(ConfigError, match="sisdr_weight > 0"):
        MultiTaskLoss(LossConfig(kd="mtakd", sisdr_weight=0.0, kd_sisdr=True))
    with pytest.raises(ConfigError, match="sisdr_weight > 0"):
        MultiTaskLoss(LossConfig(kd="fixed", sisdr_weight=0.0, kd_sisdr=True))
    # no distillation task: the setting does nothing (a student config that sets it serves --kd none)
    torch.manual_seed(0)
    est, clean, noisy = _spec(), _spec(), _spec()
    ew, cw = torch.randn(2, 800), torch.randn(2, 800)
    on = MultiTaskLoss(LossConfig(kd="none", sisdr_weight=0.1, kd_sisdr=True))(est, clean, noisy, est_wav=ew, clean_wav=cw)
    off = MultiTaskLoss(LossConfig(kd="none", sisdr_weight=0.1))(est, clean, noisy, est_wav=ew, clean_wav=cw)
    assert "kd_sisdr" not in on and on["loss"].item() == off["loss"].item()
    assert not MultiTaskLoss(LossConfig(kd="none", sisdr_weight=0.1, kd_sisdr=True)).uses_teacher_wav
    assert MultiTaskLoss(LossConfig(kd="fixed", sisdr_weight=0.1, kd_sisdr=True)).uses_teacher_wav
