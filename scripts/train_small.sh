#!/usr/bin/env bash
# Reproduce the small preset's data and checkpoints from scratch (CPU). Every stage resumes from
# its output folder, so rerunning after an interruption continues where it stopped.
#   data/train    320 in-domain episodes (about 30-45 min with 2 workers)
#   data/heldout  184 in-domain + OOD episodes, seed 1 (about 20-25 min)
#   runs/tokenizer, runs/wm_act, runs/wm_txt   (hours on 2 CPU cores; minutes on a GPU:
#       the shipped ones came from scripts/train_models_frames.py on one GPU, see checkpoints/small/README.md)
#   runs/proxy_reward   the proxy-reward baseline (about 15 min on 1 CPU thread)
#   data/calib, data/train_seed3   fresh in-domain collections, seeds 2 and 3 (64 and 960 episodes:
#       about 10 min and 52 min measured with --workers 1), for WM_act's done head, refitted on episodes the backbone
#   runs/refit_done     never saw (`roboscape refit-done`, about 1 h on 1 CPU thread; README)
#   runs/context_decoder   the decoder that draws WM_act's predicted tokens on the real context frame,
#       fitted on data/train_seed3 (about 36 min on 1 CPU thread beside another job, for 612 episodes)
# Shipped copies: weights only, via roboscape_r.checkpoint.export_weights, in checkpoints/small/.
set -euo pipefail
cd "$(dirname "$0")/.."
export VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-/usr/share/vulkan/icd.d/lvp_icd.json}"
RS=.venv/bin/roboscape
$RS collect --out data/train --scenes in-domain --episodes 320 --seed 0
$RS collect --out data/heldout --scenes in-domain ood --episodes 184 --seed 1 --source-mix 0.5 0.3 0.2
$RS train-tokenizer --data data/train --out runs/tokenizer --train.steps 3000 --train.batch-size 64
$RS train-wm --data data/train --tokenizer runs/tokenizer --out runs/wm_act --train.kind act --train.steps 2500 --train.batch-size 16
$RS train-wm --data data/train --tokenizer runs/tokenizer --out runs/wm_txt --train.kind txt --train.steps 2500 --train.batch-size 16
$RS train-proxy-reward --data data/train --out runs/proxy_reward
for kind in tokenizer wm_txt proxy_reward; do
    src=runs/$kind
    .venv/bin/python -c "import sys; from roboscape_r.checkpoint import export_weights; export_weights(sys.argv[1], sys.argv[2], expected_kind=sys.argv[3])" \
        "$src" "checkpoints/small/$kind.pt" "$kind"
done
$RS collect --out data/calib --scenes in-domain --episodes 64 --seed 2
$RS collect --out data/train_seed3 --scenes in-domain --episodes 960 --seed 3
# The tokenizer just exported (the one WM_act was trained with), not an older shipped one.
$RS refit-done --wm-act runs/wm_act --tokenizer checkpoints/small/tokenizer.pt \
    --data data/train_seed3 --val-data data/calib --out runs/refit_done
cp runs/refit_done/wm_act.pt checkpoints/small/wm_act.pt  # weights only already; its done head refitted
# data/train_seed3's frames were never WM_act's training targets (only its done head saw their features).
$RS train-context-decoder --tokenizer checkpoints/small/tokenizer.pt --wm-act checkpoints/small/wm_act.pt \
    --data data/train_seed3 --out runs/context_decoder --num-threads 1
cp runs/context_decoder/context_decoder.pt checkpoints/small/context_decoder.pt  # weights only already
echo "checkpoints written to checkpoints/small/"
