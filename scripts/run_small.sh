#!/usr/bin/env bash
# The small experiment (`roboscape experiment --preset small`) from scratch or resumed, on this
# or a new machine: its data, the run, its report. About 13 h on 2 CPU cores (README); stop it
# at any point and run this again to go on.
#   RUN   the run folder (default runs/experiment-small). When it does not exist yet and
#         SNAPSHOT (default results/experiment-small-partial) holds a copy of a run part-way
#         (scripts/snapshot_run.py), the run starts from that copy: finished cells and final
#         stages are kept, a cell that was training resumes from its resume.slim.pt.
# Data collections resume too, and are instant when complete; ManiSkill's episodes of the same
# seed differ slightly between machines, so a recollected data/train is not byte-identical.
set -euo pipefail
cd "$(dirname "$0")/.."
export VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-/usr/share/vulkan/icd.d/lvp_icd.json}"
RUN="${RUN:-runs/experiment-small}"
SNAPSHOT="${SNAPSHOT:-results/experiment-small-partial}"
RS=.venv/bin/roboscape
if [ ! -e "$RUN" ] && [ -f "$SNAPSHOT/experiment.json" ]; then
    echo "== starting $RUN from the copy in $SNAPSHOT"
    mkdir -p "$RUN"
    cp -r "$SNAPSHOT/experiment.json" "$SNAPSHOT/cells" "$RUN/"
    for stage in reward_check wm_eval; do  # final stages done early (they are skipped when current)
        if [ -d "$SNAPSHOT/$stage" ]; then cp -r "$SNAPSHOT/$stage" "$RUN/"; fi
    done
fi
echo "== 1/3 data/train: BC's demonstrations and the world-model cells' start frames"
$RS collect --out data/train --scenes in-domain --episodes 320 --seed 0
echo "== 2/3 data/heldout: the reward check and the world-model evaluation"
$RS collect --out data/heldout --scenes in-domain ood --episodes 184 --seed 1 --source-mix 0.5 0.3 0.2
echo "== 3/3 experiment in $RUN (it writes the report at the end; \`roboscape report $RUN\` rebuilds it)"
$RS experiment --preset small --out "$RUN"
echo "report: $RUN/report/index.html (and REPORT.md)"
