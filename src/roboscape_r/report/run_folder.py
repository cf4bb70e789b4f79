"""Read an experiment's run folder: its description, every (method, seed) cell, the reward check
and the world-model evaluation. Nothing is recomputed; only saved files are read.

Layout read here (written by the experiment runner and the stage commands)::

    RUN_DIR/experiment.json            preset, config, git revision, date, tasks, methods, seeds, budgets
    RUN_DIR/cells/<method>/seed<k>/
        cell.json                      method, seed, status, train_wall_s, eval_wall_s, env_steps, error
        train/metrics.jsonl            one row per PPO update (global_step, success_once, ...) or BC step
        train/env.json                 the training env and its reward's describe()
        eval/results.json              `roboscape eval` output (per-episode records, tables, videos)
    RUN_DIR/reward_check/reward_check.json, reward_check.png   `roboscape reward-check`
    RUN_DIR/wm_eval/metrics.json       `roboscape eval-wm`

Every piece may be absent (a cell that failed or has not run yet, no reward check): the loader
records a plain sentence for each missing or unreadable file in ``RunData.missing`` and goes on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KNOWN_METHODS = ("general", "embedding", "proxy", "sim", "sim_per_task", "bc")
"""Display order of the methods the project defines; other method names follow, sorted."""
OURS = "general"
"""The method the report compares every other one against."""
SEED_DIR = re.compile(r"^seed(-?\d+)$")


@dataclass
class CellData:
    """What one (method, seed) cell left on disk."""

    method: str
    seed: int
    path: Path
    info: dict | None = None
    """cell.json, or None when absent or unreadable."""
    train_metrics: list[dict] = field(default_factory=list)
    """Rows of train/metrics.jsonl (empty when absent)."""
    env: dict | None = None
    """train/env.json (None for BC runs and when absent)."""
    eval_results: dict | None = None
    """eval/results.json."""

    @property
    def status(self) -> str:
        """cell.json's status; "not run" when the cell has no folder, "unknown" without cell.json."""
        if self.info is not None:
            return str(self.info.get("status", "unknown"))
        return "not run" if not self.path.exists() else "unknown"

    @property
    def episodes(self) -> list[dict]:
        """The evaluation's episode records, each tagged with this cell's ``method`` and ``train_seed``
        (a record's own ``seed`` is its env seed)."""
        if self.eval_results is None:
            return []
        return [{**record, "method": self.method, "train_seed": self.seed}
                for record in self.eval_results.get("episodes", [])]

    @property
    def training_env(self) -> str | None:
        """"wm" or "sim" from env.json; None when unknown (e.g. behaviour cloning)."""
        return None if self.env is None else self.env.get("env")


@dataclass
class RunData:
    """Everything the report shows, as read from a run folder."""

    run_dir: Path
    experiment: dict | None
    methods: list[str]
    """The experiment's methods and any other found under cells/, in display order (see method_order)."""
    seeds: list[int]
    cells: dict[tuple[str, int], CellData]
    """Every expected (method, seed) cell and every other one found on disk."""
    reward_check: dict | None
    reward_check_figure: Path | None
    wm_eval: dict | None
    missing: list[str]
    """One plain sentence per missing, failed or unreadable piece."""

    def cells_of(self, method: str) -> list[CellData]:
        """The cells of one method, by seed."""
        return [cell for (m, _), cell in sorted(self.cells.items(), key=lambda kv: kv[0][1]) if m == method]

    def episodes_of(self, method: str) -> list[dict]:
        """All evaluation episodes of a method, pooled over its seeds (seed order)."""
        return [episode for cell in self.cells_of(method) for episode in cell.episodes]


def method_order(names: list[str] | set[str]) -> list[str]:
    """Known methods first (in KNOWN_METHODS order), then the rest sorted."""
    names = set(names)
    return [m for m in KNOWN_METHODS if m in names] + sorted(names - set(KNOWN_METHODS))


def _read_json(path: Path, what: str, missing: list[str], *, required: bool = True) -> Any | None:
    """Parsed JSON at `path`; None (and a sentence in `missing`) when absent or unreadable."""
    if not path.is_file():
        if required:
            missing.append(f"{what}: {path.name} not found")
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        missing.append(f"{what}: {path.name} is unreadable ({error})")
        return None


def read_metrics_jsonl(path: Path) -> tuple[list[dict], int]:
    """Rows of a metrics.jsonl file and the number of lines that were not JSON objects (a line cut
    off by a crash); ([], 0) when the file is absent."""
    if not path.is_file():
        return [], 0
    rows, bad = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def _read_cell(method: str, seed: int, path: Path, missing: list[str]) -> CellData:
    cell = CellData(method, seed, path)
    where = f"cell {method}/seed{seed}"
    if not path.is_dir():
        missing.append(f"{where}: not run (no folder cells/{method}/seed{seed})")
        return cell
    cell.info = _read_json(path / "cell.json", where, missing)
    if cell.info is not None and cell.status != "done":
        error = cell.info.get("error")
        missing.append(f"{where}: status {cell.status}" + (f" ({error})" if error else ""))
    cell.train_metrics, bad_lines = read_metrics_jsonl(path / "train" / "metrics.jsonl")
    if not cell.train_metrics:
        missing.append(f"{where}: no training metrics (train/metrics.jsonl absent or empty)")
    if bad_lines:
        missing.append(f"{where}: {bad_lines} unreadable line(s) in train/metrics.jsonl were skipped")
    cell.env = _read_json(path / "train" / "env.json", where, missing, required=method != "bc")
    results = _read_json(path / "eval" / "results.json", f"{where} evaluation", missing)
    if results is not None and not isinstance(results.get("episodes"), list):
        missing.append(f"{where} evaluation: results.json has no episode list")
        results = None
    cell.eval_results = results
    return cell


def _read_stage(folder: Path, name: str, what: str, missing: list[str]) -> dict | None:
    """A run-level stage's JSON result; when absent, the stage's error.json (written by the runner
    when the stage failed) explains why."""
    if not folder.is_dir():
        missing.append(f"{what}: not run (no {folder.name}/ folder)")
        return None
    if not (folder / name).is_file() and (folder / "error.json").is_file():
        error = _read_json(folder / "error.json", what, missing) or {}
        missing.append(f"{what}: failed ({error.get('error', 'no message')}); see {folder.name}/error.json")
        return None
    result = _read_json(folder / name, what, missing)
    if result is not None and not isinstance(result, dict):
        missing.append(f"{what}: {name} is not a JSON object")
        return None
    return result


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder (see the module docstring).

    Raises:
        ValueError: `run_dir` is not a folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run folder {run_dir} does not exist; pass the folder an experiment wrote "
                         "(it holds experiment.json and cells/)")
    missing: list[str] = []
    experiment = _read_json(run_dir / "experiment.json", "experiment description", missing)
    if experiment is not None and not isinstance(experiment, dict):
        missing.append("experiment description: experiment.json is not a JSON object")
        experiment = None
    experiment = experiment or {}
    expected_methods = [str(m) for m in experiment.get("methods", [])]
    expected_seeds = [int(s) for s in experiment.get("seeds", [])]

    found: dict[tuple[str, int], Path] = {}
    cells_root = run_dir / "cells"
    if cells_root.is_dir():
        for method_dir in sorted(p for p in cells_root.iterdir() if p.is_dir()):
            for seed_dir in sorted(p for p in method_dir.iterdir() if p.is_dir()):
                match = SEED_DIR.match(seed_dir.name)
                if match is None:
                    missing.append(f"cells/{method_dir.name}/{seed_dir.name}: not a seed<k> folder, ignored")
                    continue
                found[(method_dir.name, int(match.group(1)))] = seed_dir
    else:
        missing.append("cells: no cells/ folder (no method has run yet)")

    expected = {(m, s) for m in expected_methods for s in expected_seeds}
    keys = expected | set(found)
    methods = method_order({m for m, _ in keys} | set(expected_methods))
    seeds = expected_seeds + sorted({s for _, s in keys} - set(expected_seeds))
    cells = {}
    for method in methods:
        for seed in seeds:
            if (method, seed) in keys:
                path = found.get((method, seed), cells_root / method / f"seed{seed}")
                cells[(method, seed)] = _read_cell(method, seed, path, missing)

    reward_check = _read_stage(run_dir / "reward_check", "reward_check.json", "reward check", missing)
    figure = run_dir / "reward_check" / "reward_check.png"
    if reward_check is not None and not figure.is_file():
        missing.append("reward check: reward_check.png not found (no successful episode to plot?)")
    wm_eval = _read_stage(run_dir / "wm_eval", "metrics.json", "world-model evaluation", missing)
    return RunData(run_dir, experiment if experiment else None, methods, seeds, cells, reward_check,
                   figure if figure.is_file() else None, wm_eval, missing)
