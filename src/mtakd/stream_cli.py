"""``mtakd stream``: real-time enhancement in a shell pipeline (stdin -> stdout), or live.

Pipe mode reads 16 kHz mono 16-bit little-endian PCM from stdin, one hop (160 samples,
10 ms) at a time without waiting for more than is available, and writes each enhanced block
as soon as it is complete (flushing stdout), e.g.::

    arecord -f S16_LE -r 16000 -c 1 -t raw | mtakd stream --model student.safetensors | aplay -f S16_LE -r 16000 -c 1

At EOF the last frames are flushed, so the output has exactly as many samples as the input
and equals the offline enhancement (within int16 rounding), delayed in time by 20 ms.
``--backend onnxruntime --hops K`` runs K hops per onnxruntime call (less overhead per hop)
and delays the output by ``(K - 1) * 10 ms`` more; a step ``.onnx`` file brings its own K
(``mtakd export --hops K``). A student with look-ahead (``model.args.lookahead = L``) delays it
by ``L * 10 ms`` more.
``--format wav`` reads a WAV stream (16 kHz mono 16-bit) and writes one whose header has
"unknown" sizes (0xFFFFFFFF), as streaming tools do. ``--mic`` runs microphone -> speakers
with the optional ``sounddevice`` package.

``python -m mtakd.stream_cli --backend onnxruntime --model student.onnx`` is the same verb
without importing torch (numpy + onnxruntime only): it starts in a fraction of a second.
"""
from __future__ import annotations

import argparse
import os
import struct
import sys

import numpy as np

from .config import ConfigError, positive_int
from .stft_np import HOP, SAMPLE_RATE

READ_BYTES = 2 * HOP  # one hop of s16le


class StreamFormatError(ConfigError):
    """stdin is not what ``--format`` says (a usage error: one line, exit status 2)."""


def _read_exact(f, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = f.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_wav_header(f) -> None:
    """Consume a WAV header up to the start of the samples; insist on 16 kHz mono PCM16."""
    head = _read_exact(f, 12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise StreamFormatError("<stdin>: is not a WAV stream; use --format s16le for headerless PCM")
    fmt = None
    while True:
        h = _read_exact(f, 8)
        if len(h) < 8:
            raise StreamFormatError("<stdin>: WAV stream ends before its data chunk")
        cid, size = h[:4], int.from_bytes(h[4:], "little")
        if cid == b"data":
            break
        body = _read_exact(f, size + (size & 1))  # chunks are padded to even sizes
        if cid == b"fmt ":
            tag, ch, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the subformat GUID starts with the tag
                tag = int.from_bytes(body[24:26], "little")
            fmt = (tag, ch, rate, bits)
    if fmt != (1, 1, SAMPLE_RATE, 16):
        what = "no fmt chunk" if fmt is None else f"{fmt[1]} ch, {fmt[2]} Hz, {fmt[3]}-bit, format tag {fmt[0]}"
        raise StreamFormatError(f"<stdin>: WAV stream has {what}; mtakd stream needs {SAMPLE_RATE} Hz mono 16-bit PCM (convert with sox/ffmpeg)")


def wav_stream_header() -> bytes:
    """A 44-byte PCM16 mono 16 kHz WAV header with unknown (0xFFFFFFFF) sizes."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16)
            + b"data" + struct.pack("<I", unknown))


def to_pcm16(y: np.ndarray) -> bytes:
    # same quantisation as audio.save_audio
    return np.clip(np.round(y.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2").tobytes()


def run_pipe(streamer, fin, fout, fmt: str = "s16le") -> int:
    """Enhance PCM from binary ``fin`` to binary ``fout`` until EOF; return samples written."""
    if fmt == "wav":
        read_wav_header(fin)
        fout.write(wav_stream_header())
    read = getattr(fin, "read1", fin.read)  # read1: return what is there, never wait for a full block
    odd, written = b"", 0
    while True:
        chunk = read(READ_BYTES)
        if not chunk:
            break
        if odd:
            chunk, odd = odd + chunk, b""
        if len(chunk) & 1:
            chunk, odd = chunk[:-1], chunk[-1:]
        if not chunk:
            continue
        y = streamer.feed(np.frombuffer(chunk, "<i2").astype(np.float32) * (1.0 / 32768.0))
        if y.size:
            fout.write(to_pcm16(y))
            fout.flush()
            written += y.size
    if odd:
        print("mtakd: warning: input ended with half a sample; dropped it", file=sys.stderr)
    y = streamer.flush()
    fout.write(to_pcm16(y))
    fout.flush()
    return written + y.size


def run_mic(streamer) -> None:
    """Microphone -> enhancement -> speakers until Ctrl-C (needs ``sounddevice``)."""
    try:
        import sounddevice as sd
    except ImportError:
        raise ConfigError("--mic needs the optional 'sounddevice' package (pip install sounddevice); or pipe audio: "
                          "arecord -f S16_LE -r 16000 -c 1 -t raw | mtakd stream ... | aplay -f S16_LE -r 16000 -c 1") from None
    # silence to cover the stream's delay: feed() returns its first hop one call late (K hops
    # per run: up to K calls late, then K hops at once), so the queue never runs dry
    queue = np.zeros(streamer.delay_samples - HOP, np.float32)

    def callback(indata, outdata, frames, _time, status):
        nonlocal queue
        queue = np.concatenate((queue, streamer.feed(indata[:, 0].copy())))
        n = min(frames, queue.size)
        outdata[:n, 0], outdata[n:, 0] = queue[:n], 0.0
        queue = queue[n:]

    with sd.Stream(samplerate=SAMPLE_RATE, blocksize=HOP, channels=1, dtype="float32", callback=callback):
        print("mtakd: live enhancement (microphone -> speakers); Ctrl-C stops", file=sys.stderr)
        while True:
            sd.sleep(1000)


def make_streamer(model, backend: str, hops: int | None = None):
    """A fresh streamer; an ``.onnx`` model on onnxruntime takes the torch-free path.
    ``hops``: onnxruntime hops per run (None: the file's own, or 1 for a checkpoint)."""
    if hops not in (None, 1) and backend != "onnxruntime":
        raise ConfigError("--hops needs --backend onnxruntime (the torch backend steps one hop at a time)")
    if backend == "onnxruntime" and isinstance(model, str) and model.lower().endswith(".onnx"):
        if not os.path.isfile(model):
            raise ConfigError(f"{model}: no such ONNX file; check the path")
        try:
            from .ort_runtime import OrtStreamingEnhancer

            streamer = OrtStreamingEnhancer(model)
        except (ImportError, ValueError) as e:
            raise ConfigError(f"{model}: {' '.join(str(e).split())}") from None
        except Exception as e:  # noqa: BLE001 - onnxruntime's InvalidProtobuf, Fail, ... are not ValueErrors
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            raise ConfigError(f"{model}: not a loadable ONNX model ({' '.join(first.split())}); "
                              "export one with 'mtakd export'") from None
        if hops is not None and streamer.hops != hops:
            raise ConfigError(f"{model}: this step graph runs {streamer.hops} hop(s) per call, not {hops}; "
                              f"re-export it with 'mtakd export --hops {hops}' (or leave --hops out)")
        return streamer
    from .enhancement import get_engine

    engine = get_engine(model, backend, hops or 1)
    if not engine.causal:
        raise ConfigError("this model is not causal (the teacher looks ahead) and cannot stream; use a student, or 'mtakd enhance'")
    return engine.stream()


def cmd_stream(args: argparse.Namespace) -> int:
    streamer = make_streamer(args.model, args.backend, args.hops)
    if args.mic:
        run_mic(streamer)
        return 0
    try:
        run_pipe(streamer, sys.stdin.buffer, sys.stdout.buffer, args.format)
    except BrokenPipeError:
        # the reader went away (e.g. '| head'): stop quietly, and keep Python's exit-time flush quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", help="student checkpoint (.safetensors) or step ONNX file; default: the shipped student")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--hops", type=positive_int, metavar="K",
                   help="onnxruntime: K 10 ms hops per run (default: the .onnx file's own, else 1). Less CPU per hop, "
                        "but (K-1) x 10 ms more latency: 20 ms at K=1, 30 ms at K=2, 50 ms at K=4 (+10 ms per look-ahead "
                        "frame of the model)")
    p.add_argument("--format", choices=("s16le", "wav"), default="s16le", help="stdin/stdout container (default: raw PCM)")
    p.add_argument("--mic", action="store_true", help="live microphone -> speakers (needs the 'sounddevice' package)")
    p.set_defaults(func=cmd_stream)


def register_cli(sub) -> None:
    _add_args(sub.add_parser("stream", help="real-time enhancement: 16 kHz s16le PCM stdin -> stdout (or --mic)"))


def main(argv: list[str] | None = None) -> int:
    """``python -m mtakd.stream_cli ...``: the ``stream`` verb on its own (torch-free with ONNX)."""
    ap = argparse.ArgumentParser(prog="python -m mtakd.stream_cli", description="real-time enhancement stdin -> stdout")
    _add_args(ap)
    args = ap.parse_args(argv)
    try:
        return cmd_stream(args)
    except ValueError as e:  # ConfigError, and AudioError/CheckpointError from the torch path
        print(f"mtakd: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
