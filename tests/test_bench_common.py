"""benchmarks/bench_common.py: what a benchmark page says about the machine it ran on."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_common import cpu_model  # noqa: E402

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni
processor\t: 1
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni
"""


def test_cpu_model_tells_hosts_of_one_name_apart():
    """Two hosts both called "AMD EPYC" differed 2-3x in speed: the page must say which one ran."""
    assert cpu_model(ZEN4) == "AMD EPYC (family 25 model 17, AVX-512 VNNI)"
    avx2 = ZEN4.replace(" avx512f avx512bw avx512_vnni", "").replace(": 17", ": 49")
    assert cpu_model(avx2) == "AMD EPYC (family 25 model 49, AVX2)"


def test_cpu_model_without_details_is_just_the_name():
    import platform

    assert cpu_model("model name\t: Some CPU\n") == "Some CPU"
    assert cpu_model("") == (platform.processor() or "unknown CPU")
