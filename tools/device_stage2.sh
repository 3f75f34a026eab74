#!/usr/bin/env bash
# Copyright 2026 nova3r_ros developers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#
# One prepared lent-GPU run for issue 8: a larger image encoder trained in stage 2 through the
# shipped, frozen decoder at a GPU's batch size, on scenes generated on that machine, sized to
# one device command. RECIPE=deep (default) grows the shipped encoder (identity start, so it
# begins as good as the release); RECIPE=wide trains a 288-wide one from scratch (the bolder
# bet: more capacity, but it starts from nothing).
#
#   tools/device_stage2.sh --wheels     # here, once: the data generator's cp312 wheels -> .whl
#   device, carry [".whl"]: "bash tools/device_stage2.sh --smoke" (timeout_s 180; the whole
#     chain in a minute: proves the machine can run it), then at once, while it is warm,
#     "bash tools/device_stage2.sh" (timeout_s 540)
#   python -m nova3r_ros.train.shards join <files_at> runs/gpu_s2/model.safetensors   # here
#   tools/device_stage2.sh --smoke      # here: the same chain in minutes on the CPU
#
# Why this shape: a device command may run 10 minutes and a session holds 15 minutes of device
# time, start-up included, so the smoke call and the 8-minute run leave a few minutes to spare;
# the working tree that travels may hold 64 MiB (the float16 model leaves room for the wheels),
# and at most 8 files of 16 MiB come back (the model in float16 shards: 32 MiB deep, 51 MiB
# wide). Phases print their wall-clock times, so the next run can be sized from this one's.
# Environment (defaults): SCENES (6000) training scenes from seed SEED_START (20000, clear of
# every seed the CPU fits use), BATCH (32), RECIPE (deep: the shipped encoder warm-started and
# grown to 16 backbone blocks and 8 aggregator layers, LR 3e-4; wide: a WIDTH (288) wide
# encoder with HEADS (6) heads from scratch, LR 8e-4),
# POINTMAP (0: off; e.g. 0.1 adds stage 2's pointmap signal, `pointmap_weight`, through a
# 256-wide pointmap head on the frame tokens),
# DEADLINE_S (480: seconds from start by which everything, export included, is done); with
# --smoke, WORK (runs/device_smoke; its results stay in $WORK/out).
set -euo pipefail

cd "$(dirname "$0")/.."
MODE=${1:-run}
PY=${PYTHON:-python3}
if [ "$MODE" = --wheels ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    -d .whl embreex==4.4.0.post1 manifold3d==3.5.4
  ls -la .whl
  exit 0
fi

START=$(date +%s)
say() { echo "[device_stage2 +$(( $(date +%s) - START ))s] $*"; }
SCENES=${SCENES:-6000}
SEED_START=${SEED_START:-20000}
BATCH=${BATCH:-32}
RECIPE=${RECIPE:-deep}
WIDTH=${WIDTH:-288}
HEADS=${HEADS:-6}
DEADLINE_S=${DEADLINE_S:-480}
PROBE_STEPS=30
case "$RECIPE" in
  wide|deep) ;;
  *) echo "RECIPE must be wide or deep, got $RECIPE" >&2; exit 2 ;;
esac
WORKERS=$(nproc)
if [ "$MODE" = --smoke ]; then  # the same chain, CPU-sized: checks wiring, not quality
  SCENES=6 BATCH=2 PROBE_STEPS=2 DEADLINE_S=100000
  WORK=${WORK:-runs/device_smoke}
  OUT=$WORK/out  # also on the device: the smoke run returns nothing
  rm -rf "$WORK"
elif [ "$MODE" = run ]; then
  : "${OUT:?run this through the device tool, whose result folder is OUT (or use --smoke)}"
  WORK=${TMPDIR:-/tmp}/nova3r_device
else
  echo "usage: $0 [--wheels | --smoke]" >&2
  exit 2
fi
# the GPU machine has everything the generator and the trainer import but these two
if [ -d .whl ] && ! "$PY" -c 'import embreex, manifold3d' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "${TMPDIR:-/tmp}/nova3r_site" .whl/*.whl
  export PYTHONPATH=${TMPDIR:-/tmp}/nova3r_site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
mkdir -p "$OUT" "$WORK"
DATA=$WORK/data
RUN=$WORK/run
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'

say "generating $SCENES training scenes from seed $SEED_START on $WORKERS workers"
"$PY" -m nova3r_ros.data.generate --out "$DATA" --split train --seed-start "$SEED_START" \
  --num-samples "$SCENES" --views 4 --workers "$WORKERS"
"$PY" -m nova3r_ros.data.generate --out "$DATA" --split val --num-samples 16 --views 4 \
  --workers "$WORKERS"
say "data done"

ARGS=(--config nova3r_ros/train/configs/tiny_stage2.yaml
  init_from=checkpoints/nova3r_tiny.safetensors "out_dir=$RUN" "data_root=$DATA" train_samples=0
  model.flow.method=ddim model.flow.num_steps=4 model.decoder.confidence_hidden=512
  coupling=ot encoder_points=512 "batch_size=$BATCH" ema_decay=0.999
  "workers=$(( WORKERS > 2 ? WORKERS - 2 : 1 ))" threads=2 ckpt_minutes=2
  val_every=0 val_num_steps=4 log_every=20 max_steps=1000000)
if [ "$RECIPE" = wide ]; then  # a new, wider encoder from scratch
  ARGS+=("model.backbone.embed_dim=$WIDTH" "model.backbone.num_heads=$HEADS"
    model.backbone.depth=12 "model.aggregator.dim=$WIDTH" "model.aggregator.num_heads=$HEADS"
    model.aggregator.depth=6 "lr=${LR:-8e-4}" min_lr=8e-5 warmup_steps=200)
  NOTE="${WIDTH}-wide encoder from scratch"
else  # deep: the shipped encoder grown 12 -> 16 blocks, 6 -> 8 layers
  ARGS+=(init_encoder_from=checkpoints/nova3r_tiny.safetensors model.backbone.depth=16
    model.aggregator.depth=8 "lr=${LR:-3e-4}" min_lr=3e-5 warmup_steps=50)
  NOTE="shipped encoder grown to 16 + 8 blocks"
fi
POINTMAP=${POINTMAP:-0}
if [ "$POINTMAP" != 0 ]; then  # every view's pointmap in view 1's frame, from the frame tokens
  ARGS+=(model.aggregator.pointmap_hidden=256 "pointmap_weight=$POINTMAP")
  NOTE="$NOTE, pointmap weight $POINTMAP"
fi
say "probe: $PROBE_STEPS steps to measure the rate"
T0=$(date +%s.%N)
"$PY" -m nova3r_ros.train.cli "${ARGS[@]}" --until-step "$PROBE_STEPS" --no-progress
T1=$(date +%s.%N)
# steps that fit before the deadline, keeping 60 s for the last validation and the export
STEPS=$("$PY" -c "
import sys
probe, elapsed, left = $PROBE_STEPS, $T1 - $T0, $DEADLINE_S - ($(date +%s) - $START) - 60
rate = probe / elapsed  # pessimistic: the probe's start-up is counted as stepping time
print(max(probe + 1, int(probe + 0.9 * rate * max(left, 0))))
")
[ "$MODE" = --smoke ] && STEPS=4
say "rate $(awk "BEGIN {print $PROBE_STEPS / ($T1 - $T0)}") steps/s in the probe; training to step $STEPS"
LEFT_MIN=$(awk "BEGIN {print ($DEADLINE_S - ($(date +%s) - $START) - 45) / 60}")
"$PY" -m nova3r_ros.train.cli --resume "$RUN" "max_steps=$STEPS" "max_minutes=$LEFT_MIN" \
  --no-progress | tee "$OUT/summary.json"
[ -f "$RUN/model_final.safetensors" ] || "$PY" -m nova3r_ros.train.cli --resume "$RUN" --export
say "training done"

"$PY" -m nova3r_ros.train.release "$RUN/model_final.safetensors" "$RUN/model_half.safetensors" \
  --storage float16 --note "device stage 2: $NOTE, $SCENES scenes, batch $BATCH"
"$PY" -m nova3r_ros.train.shards split "$RUN/model_half.safetensors" "$OUT" --max-mib 15
cp "$RUN/metrics.jsonl" "$OUT/metrics.jsonl"
say "done; $(ls "$OUT" | wc -l) files in OUT"
