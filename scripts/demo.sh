#!/usr/bin/env bash
# The main job on small defaults (`make demo`): collect a little data, then the whole experiment
# with the shipped checkpoints -- train briefly in the world model (each reward) and in ManiSkill,
# behaviour cloning, evaluate in ManiSkill in-domain and out-of-domain, reward check, report.
# Every stage resumes if interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
export VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-/usr/share/vulkan/icd.d/lvp_icd.json}"
OUT="${DEMO_OUT:-outputs/demo}"
RS=.venv/bin/roboscape
start=$(date +%s)
echo "== 1/4 collect 16 in-domain episodes of PickCube and PushCube into $OUT/data"
$RS collect --out "$OUT/data" --tasks PickCube PushCube --scenes in-domain --episodes 16 --seed 0 --source-mix 0.6 0.3 0.1
echo "== 2/4 collect 8 held-out episodes (in-domain and out-of-domain scenes) into $OUT/heldout"
$RS collect --out "$OUT/heldout" --tasks PickCube PushCube --scenes in-domain ood --episodes 8 --seed 1
$RS data check "$OUT/data"
echo "== 3/4 experiment (preset demo: configs/experiment/demo.yaml)"
$RS experiment --preset demo --out "$OUT/experiment" --train-data "$OUT/data" --heldout-data "$OUT/heldout"
echo "== 4/4 done in $(( ($(date +%s) - start) / 60 )) min"
echo "report: $OUT/experiment/report/index.html (and REPORT.md)"
