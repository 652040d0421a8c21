# Source on the lent GPU machine: merge one pack made by recipes/gpu_pack.py into $G.
#   . recipes/gpu_stage.sh q1      (one device call per pack: q1, q2, q3; q4 comes with recipes/gpu_finetune.sh)
# /root persists between calls while the machine stays warm, so the packs add up there.
G=${G:-/root/g}
mkdir -p $G/data
p=${PACKS:-gpu}/$1
[ -d $p/data ] && cp -r $p/data/. $G/data/
[ -d $p/devset ] && rm -rf $G/devset && cp -r $p/devset $G/devset
if [ -d $p/whl ] && ! python3 -c "import soundfile, soxr, pesq, pystoi" 2>/dev/null; then
  python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target /tmp/site $p/whl/*.whl
  # pesq's setup.py asks for pytest-runner (setup_requires), which the offline machine cannot
  # fetch and the build does not need: drop it from a copy of the sdist, then build that
  rm -rf /tmp/pesq_src && mkdir -p /tmp/pesq_src && tar xzf $p/whl/pesq-0.0.4.tar.gz -C /tmp/pesq_src
  sed -i "s/, *'pytest-runner'//" /tmp/pesq_src/pesq-0.0.4/setup.py
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site /tmp/pesq_src/pesq-0.0.4 || echo "PESQ BUILD FAILED"
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
echo "staged $1: $(find $G/data -name '*.flac' | wc -l) flac, $(du -sm $G/data | cut -f1) MiB"
