# On the lent GPU machine: fine-tune the shipped student twice at once (peak lr 1e-3 and 5e-4),
# with a cosine schedule sized to the time the call has left, and pack both runs into $OUT.
#   bash recipes/gpu_finetune.sh WINDOW_S q4
# INIT (default: the shipped student) is the starting point; LR_A/LR_B and SEED_A/SEED_B set the
# two runs (default 1e-3/5e-4, seeds 8/9); EXTRA (both runs), EXTRA_A and EXTRA_B (one run) add
# config overrides, e.g. EXTRA_B=loss.log_var_lr_scale=0 holds run B's task weights at 1:1.
# WHAT=teacher trains two teachers instead (INIT: the shipped teacher); TEACHER sets the teacher a
# student round distils from. A teacher round, then a student round from its best run (v0.3's
# validation had levelled off on the CPU, docs/teacher_v03.md; this pair has not been run):
#   WHAT=teacher LR_A=3e-4 LR_B=1.5e-4 SEED_A=30 SEED_B=31 bash recipes/gpu_finetune.sh 500 q4
#   mv /root/g/gA /root/g/tA; mv /root/g/gB /root/g/tB
#   TEACHER=/root/g/tA/best.safetensors LR_A=2.5e-4 LR_B=1.25e-4 SEED_A=32 SEED_B=33 \
#     EXTRA=loss.kd_teacher_error=true PROBE_S=12 TAIL_S=20 bash recipes/gpu_finetune.sh 300 q4
# v0.12 (docs/gpu_grow.md): the shipped v0.11 grown to GRU 2x120 (`mtakd grow pretrained:student
# --hidden 120 -o gpu/wide120.safetensors`, carried with q4) against its 2x96 twin, one pair per
# call on the same probe and seed (INIT_A starts run A elsewhere), two seeds:
#   INIT_A=gpu/wide120.safetensors LR_A=5e-4 LR_B=5e-4 SEED_A=36 SEED_B=36 EXTRA=loss.kd_teacher_error=true \
#     EXTRA_A=model.args.hidden=120 bash recipes/gpu_finetune.sh 460 q4
#   mv /root/g/gA /root/g/s36gA; mv /root/g/gB /root/g/s36gB
#   INIT_A=gpu/wide120.safetensors LR_A=5e-4 LR_B=5e-4 SEED_A=37 SEED_B=37 EXTRA=loss.kd_teacher_error=true \
#     EXTRA_A=model.args.hidden=120 PROBE_S=12 TAIL_S=20 bash recipes/gpu_finetune.sh 345 q4
# (440 s and 325 s: 7,578 and 5,808 steps, the second call's sixth epoch cut off; v0.12 is the first
# call's gA, best epoch). Since then each run takes its model args from its INIT, so
# EXTRA_A=model.args.hidden=120 is no longer needed.
# The runs go to $G/gA and $G/gB; a later round on the same machine first moves those aside
# (the script refuses to overwrite them).
# Student v0.6 took two calls of this script (docs/gpu_finetune.md), v0.7 two more
# (docs/gpu_finetune_r3.md). To repeat v0.6:
#   git show caf589a:src/mtakd/pretrained/student.safetensors > gpu/v05.safetensors
#   python recipes/gpu_pack.py --wheels WHEELS      # gpu/q1..q4 (gpu/ is git-ignored)
# then device calls, each carrying one pack and gpu/*.safetensors: `. recipes/gpu_stage.sh q1`,
# `... q2`, `... q3`, then
#   INIT=gpu/v05.safetensors bash recipes/gpu_finetune.sh 570 q4                   # round 1
#   INIT=<round 1 gA/last.safetensors> LR_A=5e-4 LR_B=2.5e-4 SEED_A=10 SEED_B=11 \
#     PROBE_S=12 TAIL_S=20 bash recipes/gpu_finetune.sh 272 q4                     # round 2
# (one H200; 489 s and 215 s; each call's schedule is sized by the probe, so another machine
# gives another number of steps: 9,576 and 3,618 here). v0.7, from v0.6 (the default INIT):
#   LR_A=5e-4 LR_B=2.5e-4 SEED_A=12 SEED_B=13 bash recipes/gpu_finetune.sh 570 q4   # round 3
#   mv /root/g/gA /root/g/r3gA; mv /root/g/gB /root/g/r3gB
#   INIT=/root/g/r3gA/best.safetensors LR_A=1.25e-4 LR_B=6e-5 SEED_A=14 SEED_B=15 \
#     PROBE_S=12 TAIL_S=20 bash recipes/gpu_finetune.sh 240 q4                     # round 4
# (524 s and 199 s: 10,524 and 2,970 steps; v0.7 is round 4's gA, last epoch). v0.8, from v0.7
# (the wheels for q1: recipes/gpu_wheels.sh), an A/B of the teacher-error bound, then a low-lr round with it:
#   LR_A=2.5e-4 LR_B=2.5e-4 SEED_A=16 SEED_B=16 EXTRA_A=loss.kd_teacher_error=true bash recipes/gpu_finetune.sh 500 q4
#   mv /root/g/gA /root/g/r5gA; mv /root/g/gB /root/g/r5gB
#   INIT=/root/g/r5gA/last.safetensors LR_A=1.25e-4 LR_B=6e-5 SEED_A=17 SEED_B=18 \
#     EXTRA=loss.kd_teacher_error=true PROBE_S=12 TAIL_S=20 bash recipes/gpu_finetune.sh 350 q4
# (407 s and 300 s: 6,390 and 4,566 steps; v0.8 is round 6's gB, last epoch; docs/gpu_finetune_r5.md).
# v0.10, from v0.9 against teacher v0.3 (round 9 from round 8's gA best added nothing; docs/gpu_finetune_r8.md):
#   LR_A=5e-4 LR_B=2.5e-4 SEED_A=32 SEED_B=33 EXTRA=loss.kd_teacher_error=true bash recipes/gpu_finetune.sh 560 q4
# (489 s: 8,100 steps; v0.10 is round 8's gA, last epoch).
# Rounds 1-6 ran with the older sizing below (40 s, 10 % slack, TAIL_S 25).
# The probe runs both fine-tunes for PROBE_S seconds to measure steps/s with both on the GPU,
# so the schedule ends inside the window whatever the machine; each epoch writes last/best.
W=$1; T0=$(date +%s); G=${G:-/root/g}; OUT=${OUT:-/tmp/out}; mkdir -p $OUT
# a second round on the same machine must not write into the first round's runs (its INIT may
# live there): refuse, and say how to keep them
for r in gA gB; do if [ -e $G/$r ]; then
  echo "gpu_finetune: $G/$r exists (an earlier round); keep it under another name first, e.g. mv $G/$r $G/r1$r"; exit 2; fi; done
rm -rf $G/probe_gA $G/probe_gB
. recipes/gpu_stage.sh $2
python3 -c "import torch, pesq, soundfile, soxr; print('torch', torch.__version__, torch.cuda.is_available())"
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader 2>/dev/null
NW=${NW:-6}
# WHAT and TEACHER: see the header
DATA_ARGS="--no-progress data.root=$G/data valid.dir=$G/devset valid.max_files=24 data.preload=true data.num_workers=$NW
 optim.batch_size=${BS:-64} threads=1"
if [ "${WHAT:-student}" = teacher ]; then
  VERB=train-teacher
  INIT=${INIT:-src/mtakd/pretrained/teacher.safetensors}
  COMMON="-c configs/teacher.yaml $DATA_ARGS $EXTRA"
else
  VERB=distill
  COMMON="-c configs/student.yaml --kd mtakd --tf-weight on --teacher ${TEACHER:-src/mtakd/pretrained/teacher.safetensors}
 $DATA_ARGS loss.sisdr_weight=0.3 loss.kd_sisdr=true $EXTRA"
  INIT=${INIT:-src/mtakd/pretrained/student.safetensors}
fi
declare -A LR=([gA]=${LR_A:-1e-3} [gB]=${LR_B:-5e-4}) SEED=([gA]=${SEED_A:-8} [gB]=${SEED_B:-9})
declare -A ARGS=([gA]="${EXTRA_A:-}" [gB]="${EXTRA_B:-}")   # overrides for one run only (an A/B)
# INIT_A / INIT_B start one run elsewhere (a grown student against its twin in one call)
# (--init goes before the overrides: argparse takes the KEY=VALUE list only once)
declare -A INITS=([gA]=${INIT_A:-$INIT} [gB]=${INIT_B:-$INIT})
# each run's model args are read from its INIT checkpoint (a grown student is 2x120, the configs'
# default 2x96; a model that differs from its checkpoint's is refused); EXTRA* still override them
# (mtakd's own checkpoint reader: a missing or foreign file stops the call with its one-line error)
mapfile -t M < <(python3 -c "import json, sys
from mtakd.checkpoint import CheckpointError, read_checkpoint
try:
    for p in sys.argv[1:]: print('model.args=' + json.dumps(read_checkpoint(p)[1]['model']['args'], separators=(',', ':')))
except CheckpointError as e: sys.exit(f'gpu_finetune: {e}')" ${INITS[gA]} ${INITS[gB]})
[ ${#M[@]} = 2 ] || exit 2
declare -A MARGS=([gA]="${M[0]}" [gB]="${M[1]}")
echo "model args: gA ${MARGS[gA]}; gB ${MARGS[gB]}"
PIDS=()
for r in gA gB; do
  python3 -m mtakd $VERB --run-dir $G/probe_$r --init ${INITS[$r]} $COMMON optim.lr=${LR[$r]} seed=${SEED[$r]} ${MARGS[$r]} ${ARGS[$r]} \
    data.items_per_epoch=6400000 optim.epochs=1 optim.log_every=10 optim.checkpoint_every=100000 > $G/probe_$r.log 2>&1 &
  PIDS+=($!)
done
rows() { [ -f $G/probe_$1/steps.csv ] && echo $(( $(wc -l < $G/probe_$1/steps.csv) - 1 )) || echo 0; }
# the probes are stopped by process id, never by a name pattern: `pkill -f` also matched the
# device tool's own shell whenever its command line mentioned a probe folder, and killed the call
for i in $(seq 120); do [ $(rows gA) -ge 2 ] && [ $(rows gB) -ge 2 ] && break; kill -0 ${PIDS[@]} 2>/dev/null || break; sleep 1; done
echo "probe first rows after $(( $(date +%s) - T0 )) s"
a0=$(rows gA); b0=$(rows gB); t0=$(date +%s.%N); sleep ${PROBE_S:-20}
a1=$(rows gA); b1=$(rows gB); t1=$(date +%s.%N)
kill ${PIDS[@]} 2>/dev/null; wait ${PIDS[@]} 2>/dev/null; sleep 1
RATE=$(python3 -c "print(min($a1-$a0, $b1-$b0) * 10 / ($t1 - $t0))")
LEFT=$(( W - ($(date +%s) - T0) ))
# 20 s for start-up, six validations and checkpoints, then 10 % slack on the measured rate. Round 5
# (docs/gpu_finetune_r5.md) measured ~10 s of start-up and its runs stepped faster than the probe
# (both probes share the GPU's first seconds), so the older 40 s and 10 % left 94 s of a 500 s call
# idle; if a run does overrun, `timeout` stops it and the last finished epoch is kept. The slack
# went from 5 % back to 10 % after round 11 (docs/gpu_grow.md): a 12 s probe read 22.5 steps/s, the
# runs made ~20, and the sixth epoch was cut off.
STEPS=$(python3 -c "print(max(60, int($RATE * ($LEFT - 20 - ${TAIL_S:-15}) * 0.90) // 6 * 6))")
echo "probe: gA $((a1-a0))0 gB $((b1-b0))0 steps in $(python3 -c "print(round($t1-$t0,1))") s -> $RATE steps/s; $LEFT s left -> $STEPS steps"
tail -3 $G/probe_gA.log
if [ "$RATE" = "0.0" ]; then tail -20 $G/probe_gA.log; cp $G/probe_g*.log $OUT/; exit 1; fi
IPE=$(( STEPS / 6 * ${BS:-64} ))
for r in gA gB; do
  timeout $(( LEFT - ${TAIL_S:-15} )) python3 -m mtakd $VERB --run-dir $G/$r --init ${INITS[$r]} $COMMON optim.lr=${LR[$r]} seed=${SEED[$r]} ${MARGS[$r]} ${ARGS[$r]} \
    data.items_per_epoch=$IPE optim.epochs=6 optim.warmup_steps=$(( STEPS / 30 )) optim.checkpoint_every=1000000 > $G/$r.log 2>&1 &
done
wait
for r in gA gB; do echo "== $r"; tail -n 8 $G/$r.log | cut -c1-200; cat $G/$r/epochs.csv | cut -d, -f1-3,13-; done
# the device tool returns files of at most 16 MiB, and a teacher's checkpoint alone is 18 MB: the
# optimiser state stays behind, and the tarball comes back in 15 MiB parts
#   cat <files_at>/g_runs.tgz.part* | tar xzf - -C <folder>
cd $G && tar czf /tmp/g_runs.tgz --exclude=train_state.safetensors gA gB gA.log gB.log probe_gA.log \
  && split -b 15M -d /tmp/g_runs.tgz $OUT/g_runs.tgz.part && ls -la $OUT
