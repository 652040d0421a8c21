# On the lent GPU machine: the five-variant study of issue 3 (plus (h)) x three seeds, all at
# once, from scratch, with the shipped teacher (v0.2 when docs/results_gpu_five.md was made, v0.3 since; EXTRA=loss.tf_floor=0.5 for the floor of docs/results_cpu_floor05.md, EXTRA=model.args.mask=real for the real-mask student of docs/results_cpu_real.md); every run gets the same schedule, sized to
# the time this call has left, and the runs are packed into $OUT for scoring on a CPU.
#   bash recipes/gpu_study.sh WINDOW_S q4
# Before it, as for recipes/gpu_finetune.sh: `python recipes/gpu_pack.py --wheels DIR` here, then
# device calls `. recipes/gpu_stage.sh q1`, `... q2`, `... q3` (carry gpu/qN), then this one
# (carry gpu/q4, timeout_s about WINDOW_S + 30). Back here:
#   mkdir -p runs/gpu14 && cat <files_at>/study.tgz.part* | tar xzf - -C runs/gpu14
#   mkdir -p runs/gpu14/study/teacher && cp src/mtakd/pretrained/teacher.safetensors runs/gpu14/study/teacher/best.safetensors
#   python benchmarks/results.py --runs runs/gpu14/study --devset data/devset --jobs 2 \
#     --method h_mtakd_tf_sisdr --vs d_mtakd_tf --vs e_mtakd_gate --out docs/results_gpu_five.md \
#     --commands docs/results_gpu_five_commands.md --notes docs/results_gpu_five_notes.md \
#     --figures docs/figures/gpu_five
#   (add --extra steady=data/devset_steady to judge the study on the steady-noise set at
#    2.5-17.5 dB too, where docs/results_cpu_tanh.md found KD's gain largest; build it with the
#    command in docs/mask_tanh_notes.md; EXTRA=model.args.mask=tanh for the tanh mask)
#   (VARIANTS="... i_mtakd_sisdr_notf" adds the method without the weighted T-F loss: at the CPU
#    budget it wins on dev and loses on the steady set, docs/results_cpu_tf.md; the GPU budget
#    has never run it)
# It made docs/results_gpu_five.md (565 s window on an H200: 1,084 steps x 64 per run); its
# commands page also has the same schedule pinned, without the probe, for any machine. The
# CPU-budget twin of this study, same variants and seeds: docs/results_cpu_five.md.
# Environment: VARIANTS (recipes/reproduce.sh names; default the five of issue 3 plus h), SEEDS
# ["0 1 2"], BS [64] batch, EPOCHS [4], NW [1] data workers per run, PROBE_S [20], TAIL_S [15],
# EXTRA (overrides for every run). G [/root/g] holds the staged data; the runs go to $G/study,
# which must not exist yet.
# The probe trains every run at once for PROBE_S seconds: the slowest run's steps/s, with all of
# them sharing the GPU and the 16 cores, sizes one schedule for all (identical budgets), so the
# study ends inside the window whatever the machine; `timeout` stops an overrun, and each run
# keeps its last finished epoch (best.safetensors by validation PESQ-WB, last.safetensors).
# Warm-up is STEPS/20 steps (the CPU study's 50 of 800 is 1/16); its commands page says so.
set -u
W=${1:?usage: bash recipes/gpu_study.sh WINDOW_S PACK}; T0=$(date +%s); G=${G:-/root/g}; OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
S=$G/study
if [ -e "$S" ]; then echo "gpu_study: $S exists (an earlier call); move it aside first, e.g. mv $S $G/study1"; exit 2; fi
. recipes/gpu_stage.sh "${2:?usage: bash recipes/gpu_study.sh WINDOW_S PACK}"
python3 -c "import torch, pesq, soundfile, soxr; print('torch', torch.__version__, torch.cuda.is_available())"
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader 2>/dev/null
export VARIANTS=${VARIANTS:-a_none b_fixed c_fixed_tf d_mtakd_tf e_mtakd_gate h_mtakd_tf_sisdr}
export SEEDS=${SEEDS:-0 1 2} PY=python3 DATA=$G/data DEVSET=$G/devset
N=$(( $(wc -w <<< "$VARIANTS") * $(wc -w <<< "$SEEDS") ))
BS=${BS:-64}; EPOCHS=${EPOCHS:-4}
BASE="optim.batch_size=$BS data.preload=true data.num_workers=${NW:-1} valid.max_files=24 threads=1 ${EXTRA:-}"
teacher() {  # the shipped teacher stands in for step 1 of recipes/reproduce.sh
  mkdir -p "$1/teacher" && cp src/mtakd/pretrained/teacher.safetensors "$1/teacher/best.safetensors" && touch "$1/teacher/DONE"
}

# ---- probe: all N runs at once, in their own process group (stopped by group id, never by a
# name pattern: see recipes/gpu_finetune.sh)
P=$G/study_probe; rm -rf "$P"; teacher "$P"
JOBS=$N STUDENT_ARGS="$BASE data.items_per_epoch=64000000 optim.epochs=1 optim.log_every=1 optim.checkpoint_every=1000000" \
  setsid bash recipes/reproduce.sh "$P" > "$G/study_probe.log" 2>&1 &
PG=$!
steps() {  # fewest logged steps over the N runs (0 until every run has logged)
  local m=-1 n f
  for f in "$P"/*_s*/steps.csv; do
    [ -f "$f" ] || continue
    n=$(( $(wc -l < "$f") - 1 ))  # one row per step (log_every=1)
    { [ $m -lt 0 ] || [ $n -lt $m ]; } && m=$n
  done
  [ "$(ls -d "$P"/*_s*/ 2>/dev/null | wc -l)" -eq "$N" ] && [ $m -gt 0 ] && echo $m || echo 0
}
for i in $(seq 180); do [ "$(steps)" -ge 20 ] && break; kill -0 $PG 2>/dev/null || break; sleep 1; done
echo "probe: every run logging after $(( $(date +%s) - T0 )) s"
s0=$(steps); t0=$(date +%s.%N); sleep "${PROBE_S:-20}"; s1=$(steps); t1=$(date +%s.%N)
kill -- -$PG 2>/dev/null; sleep 2; kill -9 -- -$PG 2>/dev/null; wait $PG 2>/dev/null
RATE=$(python3 -c "print(($s1 - $s0) / ($t1 - $t0))")
LEFT=$(( W - ($(date +%s) - T0) ))
# 30 s for start-up (N processes preloading the corpus), EPOCHS validations and checkpoints; 5 % slack
STEPS=$(python3 -c "print(max(4 * $EPOCHS, int($RATE * ($LEFT - 30 - ${TAIL_S:-15}) * 0.95) // $EPOCHS * $EPOCHS))")
echo "probe: slowest of $N runs $s0 -> $s1 steps in $(python3 -c "print(round($t1 - $t0, 1))") s = $RATE steps/s; $LEFT s left -> $STEPS steps per run"
if [ "$s1" -le "$s0" ]; then tail -20 "$G/study_probe.log"; ls "$P"; tail -20 "$P"/*_s0.log; exit 1; fi

# ---- the study: identical schedule for every run
teacher "$S"
JOBS=$N STUDENT_ARGS="$BASE data.items_per_epoch=$(( STEPS / EPOCHS * BS )) optim.epochs=$EPOCHS \
  optim.warmup_steps=$(( STEPS / 20 )) optim.checkpoint_every=1000000" \
  timeout $(( LEFT - ${TAIL_S:-15} )) bash recipes/reproduce.sh "$S" > "$G/study.log" 2>&1
echo "reproduce.sh exit $? after $(( $(date +%s) - T0 )) s"; tail -5 "$G/study.log"
for d in "$S"/*_s*/; do  # epoch, step, validation PESQ-WB and SI-SDR of each run
  echo "== $(basename "$d") $(awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) c[$i] = i; next}
    {printf "%s:%s %.3f %.2f  ", $c["epoch"], $c["step"], $c["val_pesq"], $c["val_si_sdr"]}' "$d/epochs.csv" 2>/dev/null)"
done
# the teacher copy (18 MB) is the shipped file, and the report scores best.safetensors: leave out
# the teacher, last.safetensors and train_state (with them, 18 runs came to 20 MB). The device
# tool returns files of at most 16 MiB, so the tarball comes back in 15 MiB parts.
cd "$G" && tar czf /tmp/study.tgz --exclude=train_state.safetensors --exclude=last.safetensors \
  --exclude=study/teacher study study_probe.log study.log && split -b 15M -d /tmp/study.tgz "$OUT/study.tgz.part" && ls -la "$OUT"
