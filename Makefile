# The two commands of the README: `make demo` and `make test`. Both set up first.
PY := .venv/bin/python
export VK_ICD_FILENAMES ?= /usr/share/vulkan/icd.d/lvp_icd.json

.PHONY: setup demo test test-all scenes-image checkpoints

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

# Default suite (CI): everything except tests marked slow; a small end-to-end run of each stage is included.
test: setup
	bash scripts/test.sh

test-all: setup
	$(PY) -m pytest -q

scenes-image: setup
	.venv/bin/roboscape data scenes --render docs/scenes.png

# Reproduce data/ and checkpoints/small/ from scratch (long on CPU; see the script's header).
checkpoints: setup
	bash scripts/train_small.sh
