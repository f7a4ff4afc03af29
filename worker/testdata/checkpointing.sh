#!/bin/sh
# Counts from the restored checkpoint (or 0) to $1, one metrics line per step,
# writing its count into the checkpoint directory and announcing it at each
# step divisible by 5. On SIGTERM it checkpoints, announces and exits 0; a
# child it left in its process group ignores SIGTERM and sleeps until the
# group is killed.
end=$1
step=${ABLATE_RESUME_STEP:-0}
if [ "$step" -gt 0 ]; then
  restored=$(cat "$ABLATE_CHECKPOINT_DIR/count")
  echo "{\"step\": $step, \"restored\": $restored}" >&3
fi
(trap "" TERM; sleep 1000) &
echo $! > "$ABLATE_CHECKPOINT_DIR/../child.pid"
checkpoint() {
  mkdir -p "$ABLATE_CHECKPOINT_DIR/state"
  echo "$step" > "$ABLATE_CHECKPOINT_DIR/count"
  echo "at $step" > "$ABLATE_CHECKPOINT_DIR/state/note"
  echo "{\"checkpoint\": $step}" >&3
}
trap 'checkpoint; exit 0' TERM
while [ "$step" -lt "$end" ]; do
  step=$((step + 1))
  echo "{\"step\": $step, \"loss\": $step.5}" >&3
  [ $((step % 5)) -eq 0 ] && checkpoint
  sleep "${STEP_SECONDS:-0}"
done
exit 0
