"""Parameter and MAC counting checked against hand counts on toy models; RTF smoke test."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mtakd import efficiency
from mtakd.stft import N_FREQ, STFT

T = 100  # frames in one second at hop 160
F2 = 2 * N_FREQ  # 322 = real + imaginary bins of one frame


class ToyRNN(nn.Module):
    """Linear -> recurrent -> Linear over frames: (B, 2, T, F) -> mask (B, 2, T, F)."""

    def __init__(self, rnn: nn.Module, rnn_in: int, rnn_out: int):
        super().__init__()
        self.inp = nn.Linear(F2, rnn_in)
        self.rnn = rnn
        self.out = nn.Linear(rnn_out, F2)
        self.register_buffer("stats", torch.zeros(1000))  # a buffer, not a parameter

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        b, _, t, f = spec.shape
        x = spec.permute(0, 2, 1, 3).reshape(b, t, 2 * f)
        y, _ = self.rnn(self.inp(x))
        return self.out(y).reshape(b, t, 2, f).permute(0, 2, 1, 3)


class ToyCell(nn.Module):
    """Frame-by-frame loop over an LSTMCell (the streaming style)."""

    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(F2, 16)
        self.out = nn.Linear(16, F2)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        b, _, t, f = spec.shape
        x = spec.permute(0, 2, 1, 3).reshape(b, t, 2 * f)
        h = c = torch.zeros(b, 16)
        outs = []
        for i in range(t):
            h, c = self.cell(x[:, i], (h, c))
            outs.append(self.out(h))
        return torch.stack(outs, 1).reshape(b, t, 2, f).permute(0, 2, 1, 3)


class ToyConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(F2, 8, kernel_size=3, padding=1)
        self.proj = nn.Conv1d(8, F2, kernel_size=1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        b, _, t, f = spec.shape
        x = spec.permute(0, 1, 3, 2).reshape(b, 2 * f, t)
        return self.proj(self.conv(x)).reshape(b, 2, f, t).permute(0, 1, 3, 2)


def gru_toy() -> ToyRNN:
    return ToyRNN(nn.GRU(64, 32, batch_first=True), 64, 32)


def test_params_match_hand_count_and_skip_buffers():
    m = gru_toy()
    hand = (F2 * 64 + 64) + (3 * 32 * (64 + 32) + 2 * 3 * 32) + (32 * F2 + F2)
    assert efficiency.count_params(m) == hand
    assert sum(b.numel() for b in m.buffers()) == 1000  # present, yet not counted
    for p in m.inp.parameters():
        p.requires_grad_(False)  # frozen parameters still count
    assert efficiency.count_params(m) == hand
    rep = efficiency.efficiency_report(m)
    assert rep["params"] == hand and rep["params_trainable"] == hand - (F2 * 64 + 64)


def test_gru_macs_exact_and_not_double_counted():
    # on CPU the flop counter sees the GRU's addmm calls itself; the hook must replace,
    # not add to them
    per_frame = F2 * 64 + 3 * (64 + 32) * 32 + 32 * F2
    assert efficiency.macs_per_second(gru_toy(), include_stft=False) == T * per_frame


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")
def test_lstm_macs_exact_bidirectional_projected():
    lstm = nn.LSTM(64, 32, num_layers=2, bidirectional=True, proj_size=16, batch_first=True)
    m = ToyRNN(lstm, 64, 32)  # output = 2 directions x proj 16
    layer0 = 2 * (4 * (64 + 16) * 32 + 16 * 32)
    layer1 = 2 * (4 * (2 * 16 + 16) * 32 + 16 * 32)
    per_frame = F2 * 64 + layer0 + layer1 + 32 * F2
    assert efficiency.macs_per_second(m, include_stft=False) == T * per_frame
    plain = ToyRNN(nn.LSTM(64, 48, batch_first=True), 64, 48)  # fused kernel: counter sees 0
    assert efficiency.macs_per_second(plain, include_stft=False) == T * (F2 * 64 + 4 * (64 + 48) * 48 + 48 * F2)


def test_cell_and_conv_models():
    assert efficiency.macs_per_second(ToyCell(), include_stft=False) == T * (4 * (F2 + 16) * 16 + 16 * F2)
    assert efficiency.macs_per_second(ToyConv(), include_stft=False) == T * (8 * F2 * 3 + F2 * 8)


def test_stft_macs_are_counted_from_the_real_stft():
    st = STFT()
    frames = st(torch.zeros(1, 16000)).shape[2]  # whatever framing stft.py uses for 1 s
    hand = 2 * frames * st.n_fft * st.n_freq * 2  # (re, im) x (analysis, synthesis)
    assert efficiency.stft_macs_per_second() == hand
    m = gru_toy()
    assert efficiency.macs_per_second(m) - efficiency.macs_per_second(m, include_stft=False) == hand


def test_training_flag_restored():
    m = gru_toy().train()
    efficiency.macs_per_second(m)
    assert m.training


def test_rtf_positive_and_threads_restored():
    m = gru_toy()
    wav = torch.randn(1, 8000)
    st = STFT()

    def enhance(w: torch.Tensor) -> torch.Tensor:
        spec = st(w)
        return st.inverse(spec * m(spec), w.shape[-1])

    before = torch.get_num_threads()
    rtf = efficiency.real_time_factor(enhance, wav, threads=1, repeats=2)
    assert isinstance(rtf, float) and 0.0 < rtf < 10.0
    assert torch.get_num_threads() == before
    assert efficiency.real_time_factor(enhance, wav, threads=0, repeats=1) > 0.0
    assert torch.get_num_threads() == before
