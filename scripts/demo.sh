#!/usr/bin/env bash
# The main job on small defaults: collect a small multi-task dataset, check it, summarise it.
set -euo pipefail
cd "$(dirname "$0")/.."
export VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-/usr/share/vulkan/icd.d/lvp_icd.json}"
OUT="${DEMO_OUT:-outputs/demo}"
RS=.venv/bin/roboscape
echo "== 1/3 collect a small multi-task dataset into $OUT/data (resumes if interrupted)"
$RS collect --out "$OUT/data" --tasks PickCube PushCube PullCube StackCube --scenes in-domain \
    --episodes 16 --seed 0
echo "== 2/3 check it"
$RS data check "$OUT/data"
echo "== 3/3 summary and contact sheet"
$RS data summary "$OUT/data"
echo
echo "demo done: summary $OUT/data/summary.json, contact sheet $OUT/data/contact_sheet.png"
