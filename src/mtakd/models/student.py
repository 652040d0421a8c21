"""The compact causal student: compressed magnitude -> 2 recurrent layers -> complex ratio mask.

The recurrent cell is a GRU (the default, and the shipped student) or, with ``cell="lstm"``,
an LSTM. Why offer both: at equal MACs, PyTorch on the CPU runs a whole ``nn.LSTM`` sequence
in one oneDNN primitive, but an ``nn.GRU`` one step at a time, several operator calls per
step and layer. Offline at one thread, the whole pipeline of an LSTM 2x80 or 2x96 student
runs at RTF 0.0014 against the GRU 2x96's 0.0033 (docs/benchmarks.md, ``benchmarks/cells.py``);
onnxruntime runs both cells as one fused op, level there. But with the same distillation
recipe the LSTM student came out worse (docs/cells.md), so the GRU is the default.

With ``phase_input`` the input is the compressed magnitude *and* the compressed complex
spectrum (real, imag) of each bin, ``3F`` features instead of ``F`` (about +21 k parameters
and +2 M MAC/s at the default size): the mask is complex, and its phase part cannot be
learned from magnitudes alone.

With ``mask="real"`` the head gives one gain per bin, ``bound * sigmoid(raw)``, instead of a
complex mask (half the output layer). Why: this student reads magnitudes only, so the complex
mask's phase cannot be estimated, and measured on every trained student it adds nothing
(complex mask minus its magnitude alone: -0.04 to +0.01 dB SI-SDR); but it can fail. In one
no-KD seed the mask of the bins around 250 Hz saturated early at ``|M| = 1`` rotated by ~80
degrees, where the magnitude loss has no gradient and the phase recovers only slowly; that
phase cost the run 4 dB SI-SDR (docs/mask_phase.md). A sigmoid gain has no rotated state to
stick in.

With ``mask="tanh"`` the gain per bin is ``bound * tanh(|raw|)``: the complex mask's own
magnitude function on one real number (no phase), so it starts where the complex mask starts,
near 0 (a small ``raw``), with the same steep slope at small gains. The sigmoid gain starts at
``bound / 2`` and needs ``raw`` near -3 (a flat part of the sigmoid) to suppress by 26 dB;
the real-mask students removed less noise than the complex ones on VoiceBank-DEMAND
(docs/results_cpu_real_notes.md), and this mask tests whether that is the parametrisation.

Causal by construction (the recurrent layers run forward in time, every other layer is per
frame), so it streams frame by frame with ``step(frame, state)``; ``forward`` over a whole
utterance and ``step`` over its frames are the same computation (tested). The default size
is ~144 k parameters and ~14 M MAC/s, a small fraction of the teacher.

Per-bin refinement (``local_head = k`` bins, default 0 = none): the head's raw mask is a linear
map of the hidden state, at most ``hidden`` numbers per frame for ``F`` bins, so it cannot place
fine spectral detail (the harmonics of whatever pitch is speaking) bin by bin. The refinement
adds to the raw mask a small network shared by every bin and shift-equivariant along the
frequency axis: a 1-D convolution over ``k`` neighbouring bins of [this frame's compressed
magnitude, the raw mask], a PReLU, and a 1x1 convolution back to the raw mask's channels (147
parameters and 2.2 M MAC/s at k = 5 with 8 channels). Why: the shipped student removes 1-2.6 dB
less noise than its teacher in every band at no more speech distortion (docs/retention.md).
Per frame, so it streams unchanged. Its output layer starts at zero, so a student grown with it
(``mtakd grow --local-head k``) starts as the student it came from, exactly. Tried as a CPU
fine-tune of v0.13 against same-seed controls, with and without the weighted T-F loss
(docs/local_head.md), it used the detail to distort speech 0.2-0.3 dB less, not to remove more
noise: +0.01 to +0.07 dB SI-SDRi, PESQ-WB level or lower. So it is off by default.

Look-ahead (``lookahead = L`` frames, default 0): the mask of frame ``t`` is computed from
the frames up to ``t + L``. Why: the teacher sees the whole utterance, the student only the
past, and one frame (10 ms, within the 40 ms budget of docs/method.md) tells it whether a
sound goes on or stops. The input of recurrent step ``t`` is the features of frames ``t ..
t+L`` side by side: ``fc_in`` reads frame ``t``'s, ``fc_ahead`` (no bias) those of the ``L``
frames after it, added before the activation (the ONNX step graph runs them as one Gemm).
A student grown with ``mtakd grow --lookahead L`` (``fc_ahead`` zero) starts as the student it
came from, exactly; the look-ahead weights are a parameter of their own so that training can
give them a learning rate of their own (``optim.lr_scale``; docs/lookahead.md). Offline, the
spectrum is padded with ``L`` zero frames at the end (the last frames' look-ahead); streaming,
the pipeline keeps the last ``L`` spectra, and ``step`` takes the frame to mask with the ``L``
after it. The recurrence starts at frame 0 in both: a stream's first ``L`` frames only fill
the look-ahead (no step runs on made-up frames before the signal: one step over a zero frame
there moved the shipped student's state enough to cost 0.6 dB of training SI-SDR). Both are
the same computation. The price is ``L`` hops of latency (``stft_np.HopFramer.delay_samples``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F_

from ..config import ConfigError
from ..stft import N_FREQ
from .common import MASK_EPS, bounded_mask, check_spec, compressed_complex, compressed_magnitude


CELLS = ("gru", "lstm")
MASKS = ("complex", "real", "tanh")


@dataclass
class StudentConfig:
    n_freq: int = N_FREQ
    input_size: int = 64
    hidden: int = 96
    layers: int = 2
    mask_bound: float = 1.0
    #: also feed the compressed complex spectrum (real, imag), not only the magnitude
    phase_input: bool = False
    #: recurrent cell, "gru" or "lstm" (see the module docstring)
    cell: str = "gru"
    #: LSTM only: initial forget-gate bias (b_ih + b_hh), so the cell starts out remembering;
    #: 1.0 is the usual choice (Jozefowicz et al. 2015; Keras' unit_forget_bias). None keeps
    #: torch's uniform init, whose forget gates start near 0.5
    lstm_forget_bias: float | None = 1.0
    #: frames of look-ahead L: the mask of frame t sees frames up to t + L (+L x 10 ms latency)
    lookahead: int = 0
    #: "complex": a bounded complex ratio mask (2F outputs); "real": a real mask in (0, bound),
    #: ``bound * sigmoid(raw)`` (F outputs, half the head); "tanh": a real mask ``bound * tanh(|raw|)``
    #: in [0, bound) (F outputs). Why these exist: see the module docstring
    mask: str = "complex"
    #: kernel width (bins, odd) of the per-bin refinement of the mask; 0: none (see the module docstring)
    local_head: int = 0
    #: hidden channels of that refinement
    local_channels: int = 8

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ConfigError(f"student cell (model.args.cell) must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if isinstance(self.lookahead, bool) or not isinstance(self.lookahead, int) or not 0 <= self.lookahead <= 8:
            raise ConfigError(f"student lookahead (model.args.lookahead) must be an integer frame count 0..8, got {self.lookahead!r}")
        if self.mask not in MASKS:
            raise ConfigError(f"student mask (model.args.mask) must be one of {', '.join(MASKS)}, got {self.mask!r}")
        k = self.local_head
        if isinstance(k, bool) or not isinstance(k, int) or not (k == 0 or (k % 2 == 1 and 1 <= k <= 31)):
            raise ConfigError(f"student local_head (model.args.local_head) must be 0 (none) or an odd bin count 1..31, got {k!r}")
        if isinstance(self.local_channels, bool) or not isinstance(self.local_channels, int) or self.local_channels < 1:
            raise ConfigError(f"student local_channels (model.args.local_channels) must be a positive integer, got {self.local_channels!r}")


class Student(nn.Module):
    """``forward(spec (B,2,T,F)) -> mask (B,2,T,F)``; ``step(frame (B,2,F), state)``;
    ``steps(spec (B,2,T,F), state)`` for several frames of a stream at once. With look-ahead
    ``L > 0`` (see the module docstring) ``step`` takes ``(B,2,1+L,F)`` (the frame to mask,
    then the ``L`` after it) and ``steps`` takes ``(B,2,T+L,F)`` and masks the first ``T``.

    The state is one plain tensor: ``(L, B, H)`` for a GRU; ``(2L, B, H)`` for an LSTM, its
    hidden states of the ``L`` layers then its cell states (``torch.cat([h, c])``)."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        #: features per frame: compressed magnitude, and with phase_input the complex spectrum too
        self.frame_features = (3 if cfg.phase_input else 1) * cfg.n_freq
        self.fc_in = nn.Linear(self.frame_features, cfg.input_size)
        if cfg.lookahead:  # the next L frames' features -> the same input units
            self.fc_ahead = nn.Linear(cfg.lookahead * self.frame_features, cfg.input_size, bias=False)
        self.act = nn.PReLU()
        rnn = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        # named after the cell, so a checkpoint's weights say which one they are
        setattr(self, cfg.cell, rnn(cfg.input_size, cfg.hidden, num_layers=cfg.layers, batch_first=True))
        if cfg.cell == "lstm" and cfg.lstm_forget_bias is not None:
            H = cfg.hidden
            with torch.no_grad():
                for l in range(cfg.layers):  # gate blocks (i, f, g, o): f is rows H..2H, split over both biases
                    getattr(self.lstm, f"bias_ih_l{l}")[H : 2 * H] = cfg.lstm_forget_bias / 2
                    getattr(self.lstm, f"bias_hh_l{l}")[H : 2 * H] = cfg.lstm_forget_bias / 2
        self.mask_channels = 2 if cfg.mask == "complex" else 1
        self.fc_out = nn.Linear(cfg.hidden, self.mask_channels * cfg.n_freq)
        if cfg.local_head:  # per-bin refinement; its output starts at zero (the module docstring)
            self.local_in = nn.Conv1d(1 + self.mask_channels, cfg.local_channels, cfg.local_head,
                                      padding=cfg.local_head // 2)
            self.local_act = nn.PReLU()
            self.local_out = nn.Conv1d(cfg.local_channels, self.mask_channels, 1)
            nn.init.zeros_(self.local_out.weight)
            nn.init.zeros_(self.local_out.bias)
        self.hidden_size = cfg.hidden

    @property
    def state_rows(self) -> int:
        """First dimension of the state: ``L`` (GRU) or ``2L`` (LSTM: h then c)."""
        return self.cfg.layers * (2 if self.cfg.cell == "lstm" else 1)

    def initial_state(self, batch: int = 1) -> torch.Tensor:
        """Zero recurrent state ``(L or 2L, batch, hidden)``."""
        return torch.zeros(self.state_rows, batch, self.cfg.hidden)

    def _check_state(self, state: torch.Tensor, batch: int, who: str) -> None:
        if state.shape != (self.state_rows, batch, self.cfg.hidden):
            raise ValueError(f"Student.{who} expects a state ({self.state_rows}, {batch}, {self.cfg.hidden}) "
                             f"for its {self.cfg.layers}-layer {self.cfg.cell.upper()}, got {tuple(state.shape)}")

    def _recur(self, x: torch.Tensor, state: torch.Tensor | None):
        """``x (B, T, I)``, packed state or None -> ``h (B, T, H)``, packed state."""
        if self.cfg.cell == "gru":
            return self.gru(x, state)
        L = self.cfg.layers
        h, (hn, cn) = self.lstm(x, None if state is None else (state[:L].contiguous(), state[L:].contiguous()))
        return h, torch.cat((hn, cn))

    def _features(self, spec: torch.Tensor) -> torch.Tensor:
        """``(B, 2, T, F)`` -> ``(B, T, F or 3F)``; ``(B, 2, F)`` -> ``(B, F or 3F)``."""
        mag = compressed_magnitude(spec)
        if not self.cfg.phase_input:
            return mag
        c = compressed_complex(spec)
        if spec.dim() == 4:  # (B, 2, T, F) -> (B, T, 2F): real bins, then imag bins
            c = c.transpose(1, 2).flatten(2)
        else:
            c = c.flatten(1)
        return torch.cat([mag, c], dim=-1)

    def _input(self, feat: torch.Tensor) -> torch.Tensor:
        """Features ``(B, T+L, D)`` -> input units ``(B, T, I)`` (before the activation): step
        ``t`` reads frame ``t`` through ``fc_in`` and frames ``t+1 .. t+L`` (side by side, oldest
        first) through ``fc_ahead``. Two matmuls on views rather than one on a copied window
        and copied weights: this runs once per hop when streaming."""
        L = self.cfg.lookahead
        if L == 0:
            return self.fc_in(feat)
        T = feat.shape[1] - L
        ahead = feat[:, 1:] if L == 1 else torch.cat([feat[:, j : j + T] for j in range(1, L + 1)], dim=-1)
        return self.fc_in(feat[:, :T]) + self.fc_ahead(ahead)

    def _head(self, h: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
        """Hidden ``(..., H)`` and the frames' compressed magnitude ``(..., F)`` -> mask ``(..., 2, F)``."""
        raw = self.fc_out(h).unflatten(-1, (self.mask_channels, self.cfg.n_freq))  # (..., C, F)
        if self.cfg.local_head:
            # every frame of every utterance is one row of the 1-D convolution over bins
            x = torch.cat([mag.unsqueeze(-2), raw], dim=-2).reshape(-1, 1 + self.mask_channels, self.cfg.n_freq)
            raw = raw + self.local_out(self.local_act(self.local_in(x))).reshape_as(raw)
        if self.cfg.mask != "complex":  # (..., F) gain; the imaginary part is 0, so the rest is unchanged
            raw = raw[..., 0, :]
            if self.cfg.mask == "real":
                gain = self.cfg.mask_bound * torch.sigmoid(raw)
            else:  # |raw| smoothed at 0 exactly as the complex mask's magnitude is
                gain = self.cfg.mask_bound * torch.tanh(torch.sqrt(raw * raw + MASK_EPS))
            return torch.stack((gain, torch.zeros_like(gain)), dim=-2)
        return bounded_mask(raw, self.cfg.mask_bound, ch=-2)

    def _run(self, spec: torch.Tensor, state: torch.Tensor | None):
        """``spec (B,2,T+L,F)``, ``state`` (see the class) or None (zeros) -> mask ``(B,2,T,F)``
        of the first ``T`` frames (``L`` = look-ahead), hidden ``(B,T,H)``, new state
        (``(layers,B,H)``, or ``(2 layers,B,H)`` for an LSTM)."""
        check_spec(spec, self.cfg.n_freq, "Student")
        if spec.shape[2] <= self.cfg.lookahead:
            raise ValueError(f"Student with {self.cfg.lookahead} frame(s) of look-ahead needs more than "
                             f"{self.cfg.lookahead} frames, got {spec.shape[2]}")
        feat = self._features(spec)  # (B, T+L, D): the compressed magnitude first
        x = self.act(self._input(feat))  # (B, T, I)
        h, state = self._recur(x, state)  # (B, T, H), packed state
        L, F = self.cfg.lookahead, self.cfg.n_freq  # (B, T, F) of the frames masked; static bounds, so
        mag = feat[..., :F] if L == 0 else feat[:, :-L, :F]  # a traced graph keeps T dynamic
        return self._head(h, mag).transpose(1, 2), h, state  # (B, T, 2, F) -> (B, 2, T, F)

    def forward(self, spec: torch.Tensor, return_hidden: bool = False):
        """``spec (B,2,T,F)`` -> ``mask (B,2,T,F)`` (and hidden ``(B,T,H)`` if asked)."""
        L = self.cfg.lookahead
        if L:  # the last frames' look-ahead: L zero frames after the end (what a stream's flush feeds)
            check_spec(spec, self.cfg.n_freq, "Student")
            spec = F_.pad(spec, (0, 0, 0, L))
        mask, h, _ = self._run(spec, None)
        return (mask, h) if return_hidden else mask

    def steps(self, spec: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``T`` consecutive frames at once: ``spec (B,2,T+L,F)``, ``state`` -> ``mask
        (B,2,T,F)`` of the first ``T``, new state. The same arithmetic as ``T`` calls of
        ``step``, but the recurrent layer runs its own loop over the frames: a streamer handed a
        long chunk pays one call, not ``T`` (per call, not arithmetic, is what a frame costs in
        PyTorch)."""
        self._check_state(state, spec.shape[0], "steps")
        mask, _, state = self._run(spec, state)
        return mask, state

    def step(self, frame: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame: ``frame (B,2,F)``, ``state`` -> ``mask (B,2,F)``, new state. With look-ahead
        ``L``: ``frame (B,2,1+L,F)``, the frame to mask and the ``L`` frames after it."""
        L, F = self.cfg.lookahead, self.cfg.n_freq
        want = (2, F) if L == 0 else (2, 1 + L, F)
        if frame.dim() != 1 + len(want) or tuple(frame.shape[1:]) != want:
            raise ValueError(f"Student.step expects a frame (batch, {', '.join(map(str, want))}), got {tuple(frame.shape)}")
        self._check_state(state, frame.shape[0], "step")
        feat = self._features(frame)  # (B, D) or, with look-ahead, (B, 1+L, D)
        if L:  # (B, 2, 1+L, F) -> features of the L+1 frames side by side, oldest first
            x = self.act(self._input(feat)[:, 0])  # (B, I)
            mag = feat[:, 0, :F]
        else:
            x = self.act(self.fc_in(feat))  # (B, I)
            mag = feat[:, :F]
        if self.cfg.cell == "gru":
            h, state = self.gru(x.unsqueeze(1), state)  # (B, 1, H)
            return self._head(h[:, 0], mag), state
        # one frame through nn.LSTM pays oneDNN's per-call primitive setup, which costs more
        # than the same arithmetic as one lstm_cell call per layer
        L, hs, cs = self.cfg.layers, [], []
        for l in range(L):
            p = [getattr(self.lstm, f"{n}_l{l}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            hx, cx = torch.lstm_cell(x, (state[l], state[L + l]), *p)
            hs.append(hx)
            cs.append(cx)
            x = hx
        return self._head(x, mag), torch.stack(hs + cs)
