import pytest
import torch

from mtakd.stft import HOP, N_FFT, N_FREQ, STFT, apply_mask, compress


@pytest.mark.parametrize("n", [1, 159, 160, 161, 16000, 16037])
def test_perfect_reconstruction(n):
    s = STFT()
    x = torch.randn(3, n)
    spec = s(x)
    assert spec.shape == (3, 2, s.num_frames(n), N_FREQ)
    assert torch.allclose(s.inverse(spec, n), x, atol=1e-5)


def test_matches_torch_stft():
    s = STFT()
    x = torch.randn(1, 4000)
    ours = s(x)
    ref = torch.stft(torch.nn.functional.pad(x, (N_FFT - HOP, N_FFT)), N_FFT, HOP, window=torch.hann_window(N_FFT) ** 0.5,
                     center=False, return_complex=True)[..., : ours.shape[2]]  # (1, F, T)
    assert torch.allclose(ours[:, 0], ref.real.transpose(1, 2), atol=1e-4)
    assert torch.allclose(ours[:, 1], ref.imag.transpose(1, 2), atol=1e-4)


def test_frame_halves_equal_whole_signal():
    s = STFT()
    x = torch.randn(1, 1600)
    spec = s(x)
    padded = torch.nn.functional.pad(x, (N_FFT - HOP, N_FFT))
    for t in (0, 3, spec.shape[2] - 1):
        frame = padded[:, t * HOP : t * HOP + N_FFT]
        assert torch.allclose(s.analyze_frame(frame), spec[:, :, t], atol=1e-5)


def test_dft_matrices_are_buffers_not_parameters():
    s = STFT()
    assert list(s.parameters()) == []
    assert {"fwd", "inv"} <= {n for n, _ in s.named_buffers()}
    assert s.fwd.shape == (N_FFT, 2 * N_FREQ) and s.inv.shape == (2 * N_FREQ, N_FFT)


def test_shape_errors():
    s = STFT()
    with pytest.raises(ValueError, match="batch, samples"):
        s(torch.randn(100))
    with pytest.raises(ValueError, match="161"):
        s.inverse(torch.randn(1, 2, 5, 100), 800)
    with pytest.raises(ValueError, match="mask shape"):
        apply_mask(torch.randn(1, 2, 5, 161), torch.randn(1, 2, 4, 161))


def test_apply_mask_is_complex_product():
    a, b = torch.randn(2, 2, 3, 161), torch.randn(2, 2, 3, 161)
    ca, cb = torch.complex(a[:, 0], a[:, 1]), torch.complex(b[:, 0], b[:, 1])
    out = apply_mask(a, b)
    assert torch.allclose(torch.complex(out[:, 0], out[:, 1]), ca * cb, atol=1e-5)
    frame = apply_mask(a[:, :, 0], b[:, :, 0])
    assert torch.allclose(frame, out[:, :, 0])


def test_compress_keeps_phase():
    x = torch.randn(1, 2, 4, 161)
    c = compress(x, 0.3)
    mag, cmag = x.pow(2).sum(1).sqrt(), c.pow(2).sum(1).sqrt()
    assert torch.allclose(cmag, mag**0.3, atol=1e-4)
    assert torch.allclose(torch.atan2(c[:, 1], c[:, 0]), torch.atan2(x[:, 1], x[:, 0]), atol=1e-4)
