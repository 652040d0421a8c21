#!/usr/bin/env bash
# Fetch (here, where pip reaches the registries) what the lent GPU machine lacks for training:
# soundfile, soxr, cffi, pycparser and pystoi as wheels for its Python 3.12, and pesq's sdist
# (pesq has no wheels; recipes/gpu_stage.sh builds it there with the image's numpy and cython).
#   bash recipes/gpu_wheels.sh [DIR]          (default /tmp/whl), then
#   python recipes/gpu_pack.py --wheels DIR
# The device image (see the device tool's KINDS.md) already has torch, numpy, scipy, pyyaml and
# safetensors; two versions of one package in DIR would stop the install there.
set -euo pipefail
D=${1:-/tmp/whl}; mkdir -p "$D"
PLAT=""; for n in 2_17 2_24 2_27 2_28 2_31 2_34; do PLAT="$PLAT --platform manylinux_${n}_x86_64"; done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  $PLAT --platform manylinux2014_x86_64 -d "$D" soundfile soxr cffi pycparser pystoi
# `pip download` of pesq's sdist runs its setup.py, which fails here (setup_requires pulls
# pytest-runner); take the file from the index page instead, checked against its sha256
url=$(curl -sf https://pypi.org/simple/pesq/ | grep -o 'https://[^"]*/pesq-0\.0\.4\.tar\.gz#sha256=[0-9a-f]*' | head -1)
[ -n "$url" ] || { echo "gpu_wheels: pesq-0.0.4.tar.gz not found on https://pypi.org/simple/pesq/"; exit 1; }
curl -sf -o "$D/pesq-0.0.4.tar.gz" "${url%%#*}"
echo "${url##*=}  $D/pesq-0.0.4.tar.gz" | sha256sum -c --quiet
ls "$D"
