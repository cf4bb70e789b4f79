"""`roboscape experiment --preset small|paper|demo`: the paper's comparison end to end, resumably.

For every seed: behaviour cloning (BC) on expert demos; PPO inside the world model with each
world-model reward (general = ours, embedding, proxy), warm-started from that seed's BC policy
when the preset says so; PPO in ManiSkill with the simulator's dense reward (the physics
baseline), as one multi-task policy (sim) and as one policy per task (sim_per_task, as in the
paper; evaluated through a `policy.router` file). Every PPO method gets the same env-step
budget; sim_per_task splits it evenly over its tasks. Every policy is then evaluated with
the one protocol of `roboscape eval`, in-domain and out-of-domain. The reward-validity check and
the world-model quality table join them, and `roboscape report` turns the folder into a report.

Layout (what `roboscape report` reads):

    RUN_DIR/experiment.json                 preset, git revision, date, stage times
    RUN_DIR/cells/<method>/seed<k>/cell.json    status, wall times, env steps, error if failed
    RUN_DIR/cells/<method>/seed<k>/train/   policy run folder (metrics.jsonl, env.json, checkpoints/);
                                            for sim_per_task one run folder per task, router.json,
                                            and their metrics.jsonl rows one task after another
    RUN_DIR/cells/<method>/seed<k>/eval/    results.json, videos, frame strips
    RUN_DIR/reward_check/reward_check.json, RUN_DIR/wm_eval/metrics.json (each with stage.json)
    RUN_DIR/report/index.html, REPORT.md   (`roboscape report RUN_DIR`)

A cell whose cell.json says "done" is skipped on the next run, and so is one that another
process holds (a lock file per cell and per final stage); an interrupted cell resumes from
its checkpoints (PPO and BC resume exactly); a failed cell records its error and the run goes on.
cell.json records the preset values the cell depends on (`cell_settings`); a run whose preset
gives other values for a cell stops with their names instead of mixing settings. The reward check
and the world-model table record theirs in `stage.json`; when the models or their preset entry
change, the old output is moved to `<stage>.replaced-<k>` and the stage runs again.
"""

from __future__ import annotations

import datetime
import json
import shutil
import statistics
import subprocess
import time
import traceback
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from roboscape_r.atomic import atomic_write_bytes, atomic_write_json, try_lock

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "experiment"
WORLD_MODEL_METHODS = ("general", "embedding", "proxy")
SIM_METHODS = ("sim", "sim_per_task")
METHODS = (*WORLD_MODEL_METHODS, *SIM_METHODS, "bc")
STAGE_RECORD = "stage.json"
"""In reward_check/ and wm_eval/: the settings and model digests their output was made with."""


@dataclass(frozen=True)
class ExperimentArgs:
    """Run the paper's comparison for a preset (resumes: finished cells are skipped)."""

    preset: str = "small"
    """Preset name (configs/experiment/<name>.yaml) or a path to a preset YAML file."""
    out: Path | None = None
    """Run folder; default runs/experiment-<preset>."""
    only: tuple[str, ...] = ()
    """Run only these methods (default: the preset's)."""
    train_data: Path | None = None
    """Training dataset (start frames, BC demos, embedding goals); default the preset's data.train."""
    heldout_data: Path | None = None
    """Held-out dataset of the reward check and world-model evaluation; default the preset's data.heldout."""
    report: bool = True
    """Write the report at the end (`roboscape report RUN_DIR`)."""


def load_preset(name_or_path: str) -> dict[str, Any]:
    """Read a preset YAML; unknown names list the presets there are."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ValueError(f"unknown preset {name_or_path!r}; presets: {', '.join(known)} (or a path to a YAML file)")
    preset = yaml.safe_load(path.read_text())
    unknown = [m for m in preset.get("methods", []) if m not in METHODS]
    if unknown:
        raise ValueError(f"preset {path} names unknown methods {unknown}; valid: {', '.join(METHODS)}")
    for key in ("name", "tasks", "seeds", "methods", "env_steps_per_policy", "checkpoints", "data", "eval"):
        if key not in preset:
            raise ValueError(f"preset {path} lacks the key {key!r}")
    return preset


def _override(cls, values: dict[str, Any] | None, base=None):
    """Dataclass `cls` (or `base`) with fields replaced from a preset mapping; unknown keys fail."""
    values = dict(values or {})
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown} in the preset; valid: {', '.join(sorted(names))}")
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    return replace(base if base is not None else cls(), **values)


def git_revision(cwd: Path = PRESET_DIR) -> str:
    """HEAD of the checkout `cwd` is in (default: this code's), with "+uncommitted" when tracked files
    differ from it; "unknown" outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=cwd).stdout.strip()

    try:
        return git("rev-parse", "HEAD") + ("+uncommitted" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def progress_estimate(statuses: dict[tuple[str, int], dict[str, Any]]) -> str:
    """How many cells are done and about how long the rest takes, from the cells' cell.json.

    A cell's time is its training plus evaluation wall time. A cell not done is estimated at the
    median time of the done cells of its method, or of all done cells when its method has none;
    a cell already trained counts only the evaluation part. The done cells' times include anything
    else that shared the machine then, so this is a rough guide.
    """
    done = {cell: s for cell, s in statuses.items() if s.get("status") == "done"}
    times: dict[str, list[float]] = {}
    evals: dict[str, list[float]] = {}
    for (method, _), s in done.items():
        train_s, eval_s = float(s.get("train_wall_s") or 0.0), float(s.get("eval_wall_s") or 0.0)
        times.setdefault(method, []).append(train_s + eval_s)
        evals.setdefault(method, []).append(eval_s)
    if not done:
        return f"0 of {len(statuses)} cells done (no time estimate before the first cell is done)"

    every, every_eval = [t for v in times.values() for t in v], [t for v in evals.values() for t in v]
    left_s = 0.0
    for (method, _), s in statuses.items():
        if s.get("status") == "done":
            continue
        trained = s.get("status") == "trained"
        left_s += statistics.median(evals.get(method, every_eval) if trained else times.get(method, every))
    return f"{len(done)} of {len(statuses)} cells done, about {left_s / 3600:.1f} h of cells left (median times of done cells)"


class Experiment:
    """One run folder for one preset; `run()` does every unfinished cell in order."""

    def __init__(self, preset: dict[str, Any], out: Path, only: tuple[str, ...] = ()) -> None:
        self.preset = preset
        self.out = Path(out)
        self.methods = [m for m in preset["methods"] if not only or m in only]
        if only and not self.methods:
            raise ValueError(f"--only {list(only)} selects none of the preset's methods {preset['methods']}")
        self.seeds = list(preset["seeds"])
        self.tasks = tuple(preset["tasks"])
        # The revision of the code this process runs, read once: HEAD may move while a long run goes on.
        self.revision = git_revision()
        self._digests: dict[str, str] = {}

    # ---------------------------------------------------------------- bookkeeping
    def cell_dir(self, method: str, seed: int) -> Path:
        return self.out / "cells" / method / f"seed{seed}"

    def _status(self, method: str, seed: int) -> dict[str, Any]:
        path = self.cell_dir(method, seed) / "cell.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _write_status(self, method: str, seed: int, **values: Any) -> None:
        cell = self.cell_dir(method, seed)
        cell.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cell / "cell.json", {**self._status(method, seed), "method": method, "seed": seed, **values})

    def _write_experiment(self, stage_times: dict[str, float]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "experiment.json"
        previous = json.loads(path.read_text()) if path.is_file() else {}
        atomic_write_json(path, {
            "preset": self.preset["name"], "config": self.preset, "git_revision": self.revision,
            "date": previous.get("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
            "last_update": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            # Runs on one folder with disjoint --only share this file: keep every method any of them ran.
            "tasks": list(self.tasks), "methods": self._methods_with(previous.get("methods", [])), "seeds": self.seeds,
            "env_steps_per_policy": self.preset["env_steps_per_policy"],
            "stage_wall_s": {**previous.get("stage_wall_s", {}), **stage_times}})

    def _methods_with(self, others: list[str]) -> list[str]:
        """This run's methods and `others`, in the preset's order (unknown names last, as found)."""
        known = list(self.preset["methods"])
        merged = [m for m in known if m in self.methods or m in others]
        return merged + [m for m in others if m not in merged]

    # ---------------------------------------------------------------- stages
    def run(self) -> None:
        """Every cell (train, then evaluate), then the reward check and the world-model table.

        Cells go seed by seed: all methods of the first seed, then of the next, BC first within a
        seed (PPO may start from it). A run stopped part-way thus leaves whole comparisons.
        """
        self._write_experiment({})
        order = [m for m in ("bc", *WORLD_MODEL_METHODS, *SIM_METHODS) if m in self.methods]
        cells = [(method, seed) for seed in self.seeds for method in order]
        for number, (method, seed) in enumerate(cells, start=1):
            if self._status(method, seed).get("status") != "done":
                print(f"[experiment] cell {number} of {len(cells)}: {method} seed {seed}; "
                      f"{progress_estimate({cell: self._status(*cell) for cell in cells})}", flush=True)
            self._run_cell(method, seed)
        for name, stage in (("reward_check", self._reward_check), ("wm_eval", self._wm_eval)):
            if self.preset.get(name) is None:
                continue
            # Beside the stage's folder, not in it: a stage whose models changed moves its folder away.
            with try_lock(self.out / f".{name}.lock") as held:
                if not held:
                    print(f"[experiment] {name}: another process is running it, skipped")
                    continue
                started = time.time()
                try:
                    ran = stage()
                except Exception as err:  # noqa: BLE001  (the report lists the failure; the run goes on)
                    ran = True
                    atomic_write_json(self.out / name / "error.json",
                                      {"error": repr(err), "traceback": traceback.format_exc()})
                    print(f"[experiment] {name} failed: {err!r} (see {self.out / name / 'error.json'})")
                if ran:  # a stage skipped as current keeps the time it took when it ran
                    self._write_experiment({name: time.time() - started})

    def cell_settings(self, method: str) -> dict[str, Any]:
        """The preset values a cell of `method` depends on (recorded in cell.json, checked on resume)."""
        keys = ["tasks", "env_steps_per_policy", "checkpoints", "data", "eval", "eval_scenes"]
        if method == "bc":
            keys = ["tasks", "checkpoints", "data", "bc", "eval", "eval_scenes"]
        elif method in SIM_METHODS:
            keys += ["ppo", "sim_ppo", "sim_env", "bc_warm_start"]
        else:
            keys += ["ppo", "wm_env", "bc_warm_start"]
        settings = json.loads(json.dumps({key: self.preset.get(key) for key in keys}, default=str))
        # The checkpoints' contents too: a retrained model written over the same path changes the cell.
        used = ("tokenizer",) if method == "bc" or method in SIM_METHODS else ("tokenizer", "wm_act", "wm_txt", "proxy")
        settings["checkpoint_digests"] = {name: self._digest(self.preset["checkpoints"].get(name)) for name in used}
        return settings

    def _digest(self, path: str | None) -> str | None:
        if path is None or not Path(path).is_file():
            return None
        key = str(Path(path).resolve())
        if key not in self._digests:  # hashed once per run (tens of MB each)
            from roboscape_r.data.format import sha256_file

            self._digests[key] = sha256_file(Path(path))[:16]
        return self._digests[key]

    def _check_settings(self, method: str, seed: int, status: dict[str, Any]) -> None:
        """Refuse to resume or skip a cell made with other preset values: a run would mix settings.
        Values a cell did not record (made before they were recorded) are not compared."""
        recorded, current = status.get("settings"), self.cell_settings(method)
        if recorded is None:
            return
        changed = sorted(k for k in recorded if recorded.get(k) != current.get(k))
        if not changed:
            return
        raise ValueError(f"cell {method}/seed{seed} in {self.out} was made with other preset values for {changed} "
                         f"than the preset now gives; move {self.cell_dir(method, seed)} away to redo it with the "
                         "new values, or restore the old ones")

    def _run_cell(self, method: str, seed: int) -> None:
        """Train and evaluate one cell, unless it is done or another process is working on it
        (two runs on one folder, e.g. with disjoint --only, share it safely cell by cell)."""
        with try_lock(self.cell_dir(method, seed) / ".lock") as held:
            if not held:
                print(f"[experiment] {method} seed {seed}: another process is running it, skipped")
                return
            self._run_cell_holding_lock(method, seed)

    def _run_cell_holding_lock(self, method: str, seed: int) -> None:
        status = self._status(method, seed)  # read under the lock: another process may just have finished it
        self._check_settings(method, seed, status)
        if status.get("status") == "done":
            print(f"[experiment] {method} seed {seed}: done, skipped")
            return
        if "settings" not in status:
            self._write_status(method, seed, settings=self.cell_settings(method),
                               status=status.get("status", "started"))
        cell = self.cell_dir(method, seed)
        try:
            if status.get("trained"):
                # Evaluation interrupted: the trained policies (rebuilt from their slim copies on a new machine).
                self._restore_policies(cell / "train")
                self._write_slims(cell / "train", missing_only=True)  # trained by an earlier version
            else:
                print(f"[experiment] {method} seed {seed}: training in {cell / 'train'}", flush=True)
                # A training interrupted on another machine resumes from its snapshot (scripts/snapshot_run.py).
                self._restore_policies(cell / "train", resume_training=True)
                started = time.time()
                env_steps = self._train(method, seed, cell / "train")
                train_s = status.get("train_wall_s", 0.0) + time.time() - started
                self._write_slims(cell / "train")
                # Revisions per cell: a run resumed over several sessions may span code changes.
                self._write_status(method, seed, status="trained", trained=True, train_wall_s=train_s,
                                   env_steps=env_steps, train_git_revision=status.get("train_git_revision", self.revision))
            eval_s = self._evaluate(cell / "train", seed, cell / "eval")
            self._write_status(method, seed, status="done", eval_wall_s=eval_s, error=None,
                               eval_git_revision=self.revision)
        except Exception as err:  # noqa: BLE001  (recorded; other cells still run)
            self._write_status(method, seed, status="failed", error=repr(err), traceback=traceback.format_exc())
            print(f"[experiment] {method} seed {seed} FAILED: {err!r}")

    def _train(self, method: str, seed: int, out: Path) -> int:
        from roboscape_r.policy.config import BCConfig, PPOConfig
        from roboscape_r.policy.network import PolicyConfig

        ckpts = self.preset["checkpoints"]
        if method == "bc":
            from roboscape_r.policy.bc import train_bc

            # Frames round-trip through the world model's tokenizer, so BC, and every PPO policy
            # started from it, sees in ManiSkill the same kind of image the world model shows.
            policy = PolicyConfig(frame_preprocess="tokenizer", tokenizer_path=str(ckpts["tokenizer"]))
            config = _override(BCConfig, self.preset.get("bc"), BCConfig(seed=seed, tasks=self.tasks, policy=policy))
            train_bc(self.preset["data"]["train"], out, config)
            return 0
        from roboscape_r.envs.world_model import WorldModelEnvConfig
        from roboscape_r.policy.train_args import SimEnvArgs, TrainPolicyArgs, run_train_policy

        ppo = _override(PPOConfig, self.preset.get("ppo"),
                        PPOConfig(seed=seed, total_timesteps=int(self.preset["env_steps_per_policy"])))
        if method in SIM_METHODS:
            # A few ManiSkill envs against dozens of world-model envs: `sim_ppo` lengthens the rollout
            # so that both make the same number of updates of the same size from one budget.
            ppo = _override(PPOConfig, self.preset.get("sim_ppo"), ppo)
        bc_init = None
        if self.preset.get("bc_warm_start") and "bc" in self.methods:
            bc_dir = self.cell_dir("bc", seed) / "train"
            if not self._status("bc", seed).get("trained"):
                raise RuntimeError(f"BC warm start wanted but the BC cell of seed {seed} did not finish ({bc_dir})")
            self._restore_bc_checkpoint(seed)
            bc_init = bc_dir
        if method == "sim_per_task":
            return self._train_per_task(out, ppo, bc_init)
        if method == "sim":
            sim = _override(SimEnvArgs, self.preset.get("sim_env"), SimEnvArgs(tasks=self.tasks))
            args = TrainPolicyArgs(out=out, env="sim", sim=sim, ppo=ppo, bc_init=bc_init)
        else:
            reward_kwargs = {"checkpoint": str(ckpts["proxy"])} if method == "proxy" else {}
            wm = _override(WorldModelEnvConfig, self.preset.get("wm_env"), WorldModelEnvConfig(
                tokenizer_path=Path(ckpts["tokenizer"]), wm_act_path=Path(ckpts["wm_act"]),
                wm_txt_path=Path(ckpts["wm_txt"]), dataset=Path(self.preset["data"]["train"]), tasks=self.tasks,
                reward=method, reward_kwargs=reward_kwargs))
            args = TrainPolicyArgs(out=out, env="wm", wm=wm, ppo=ppo, bc_init=bc_init)
        result = run_train_policy(args)
        if not result.finished:
            raise RuntimeError(f"PPO stopped at {result.global_step} env steps before its budget (time limit?)")
        return int(result.global_step)

    @staticmethod
    def _policy_run_folders(train_dir: Path) -> list[Path]:
        """A cell's policy run folders: train/ itself, or one per task (sim_per_task)."""
        return [train_dir, *sorted(p for p in train_dir.glob("*") if p.is_dir())] if train_dir.is_dir() else []

    def _write_slims(self, train_dir: Path, missing_only: bool = False) -> None:
        """Beside each trained policy, its slim copy (`policy.slim.pt`, without the frozen tokenizer:
        a few MB), which `scripts/snapshot_run.py` commits so that the policy survives the machine."""
        from roboscape_r.checkpoint import latest_checkpoint
        from roboscape_r.policy.checkpoint import SLIM_NAME, write_slim_policy

        for folder in self._policy_run_folders(train_dir):
            newest = latest_checkpoint(folder / "checkpoints")
            if newest is not None and not (missing_only and (folder / SLIM_NAME).is_file()):
                write_slim_policy(newest, folder / SLIM_NAME, self.preset["checkpoints"]["tokenizer"])

    def _restore_policies(self, train_dir: Path, *, resume_training: bool = False) -> None:
        """Rebuild the checkpoint of every policy run folder that has a slim copy but no checkpoint:
        the final policy's (`policy.slim.pt`), or with `resume_training` the copy of an interrupted
        training's newest checkpoint (`resume.slim.pt`, written by scripts/snapshot_run.py)."""
        from roboscape_r.checkpoint import latest_checkpoint
        from roboscape_r.policy.checkpoint import RESUME_SLIM_NAME, SLIM_NAME, restore_slim_policy

        for folder in self._policy_run_folders(train_dir):
            slim = folder / (RESUME_SLIM_NAME if resume_training else SLIM_NAME)
            if slim.is_file() and latest_checkpoint(folder / "checkpoints") is None:
                restored = restore_slim_policy(slim, self.preset["checkpoints"]["tokenizer"], folder)
                print(f"[experiment] rebuilt {restored} from {slim}", flush=True)

    def _restore_bc_checkpoint(self, seed: int) -> None:
        """Make sure the checkpoint of a finished BC cell is there, so that PPO starts from the
        policy that was evaluated, without evaluating BC again (26-40 min): rebuilt from its slim copy
        (a run folder restored from `scripts/snapshot_run.py`), else retrained.

        BC training is deterministic for a seed and a dataset, so the retrained run must give the
        recorded losses; if it does not (other data, other code, other floating-point behaviour),
        this stops rather than pair PPO cells with a BC policy other than the one evaluated."""
        from roboscape_r.checkpoint import latest_checkpoint
        from roboscape_r.report.run_folder import read_metrics_jsonl

        bc_dir = self.cell_dir("bc", seed) / "train"
        self._restore_policies(bc_dir)
        if latest_checkpoint(bc_dir / "checkpoints") is not None:
            return
        recorded, _ = read_metrics_jsonl(bc_dir / "metrics.jsonl")
        if not recorded:
            raise RuntimeError(f"the BC cell of seed {seed} is marked trained but {bc_dir} holds neither a checkpoint "
                               f"nor its metrics; move {bc_dir.parent} away to train and evaluate BC again")
        retrain = bc_dir.parent / "train.restore"
        print(f"[experiment] bc seed {seed}: checkpoint missing, retraining it in {retrain} "
              "(its evaluation is kept)", flush=True)
        self._train("bc", seed, retrain)
        mismatch = _loss_mismatch(recorded, read_metrics_jsonl(retrain / "metrics.jsonl")[0], "losses/bc_loss")
        if mismatch:
            raise RuntimeError(f"BC seed {seed} retrained in {retrain} does not reproduce the evaluated run "
                               f"({mismatch}); move {bc_dir.parent} away to train and evaluate BC again")
        # The recorded metrics stay; the checkpoints move last: their presence means the rest is there.
        for item in sorted(retrain.iterdir(), key=lambda item: item.name == "checkpoints"):
            if item.name == "metrics.jsonl":
                continue
            target = bc_dir / item.name
            if target.is_dir():
                shutil.rmtree(target)
            item.replace(target)
        shutil.rmtree(retrain)

    def _train_per_task(self, out: Path, ppo, bc_init: Path | None) -> int:
        """One ManiSkill PPO policy per task, each with 1/len(tasks) of the budget (resuming each
        run folder), then the router that `roboscape eval` loads, the training env description,
        and the runs' metrics rows concatenated with their env steps offset (for the curves)."""
        from roboscape_r.policy.router import ROUTER_FILE, write_router
        from roboscape_r.policy.train_args import SimEnvArgs, TrainPolicyArgs, run_train_policy
        from roboscape_r.report.run_folder import read_metrics_jsonl

        budget = int(self.preset["env_steps_per_policy"]) // len(self.tasks)
        total, rows = 0, []
        for task in self.tasks:
            sim = _override(SimEnvArgs, self.preset.get("sim_env"), SimEnvArgs(tasks=(task,)))
            result = run_train_policy(TrainPolicyArgs(out=out / task, env="sim", sim=sim,
                                                      ppo=replace(ppo, total_timesteps=budget), bc_init=bc_init))
            if not result.finished:
                raise RuntimeError(f"PPO for {task} stopped at {result.global_step} env steps before its budget")
            for row in read_metrics_jsonl(out / task / "metrics.jsonl")[0]:
                rows.append({**row, "task": task, "global_step": total + int(row.get("global_step", 0))})
            total += int(result.global_step)
        write_router(out / ROUTER_FILE, {task: out / task for task in self.tasks})
        envs = [json.loads((out / task / "env.json").read_text()) for task in self.tasks]
        atomic_write_json(out / "env.json", {
            "env": "sim", "reward": envs[0]["reward"], "env_ids": [i for env in envs for i in env.get("env_ids", [])],
            "per_task": list(self.tasks), "env_steps_per_task": budget})
        atomic_write_bytes(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in rows).encode())
        return total

    def _evaluate(self, policy_dir: Path, seed: int, out: Path) -> float:
        """Evaluate a cell's policy; return the evaluation's wall seconds, over every session of an
        evaluation resumed from its journal."""
        from roboscape_r.eval.evaluate import EvalConfig, evaluate

        scenes = tuple(self.preset.get("eval_scenes", ("in-domain", "ood")))
        config = _override(EvalConfig, self.preset["eval"], EvalConfig(
            policy=policy_dir, tasks=self.tasks, scenes=scenes, seed=seed, out=out))
        started = time.time()
        results = evaluate(config)
        return results["timing"]["resumed_elapsed_s"] + time.time() - started

    def _reward_check(self) -> bool:
        """The reward check on the held-out data; False when its output is current (skipped)."""
        from roboscape_r.reward.check import RewardCheckConfig, run_reward_check

        ckpts = self.preset["checkpoints"]
        config = _override(RewardCheckConfig, self.preset["reward_check"], RewardCheckConfig(
            data=Path(self.preset["data"]["heldout"]), tokenizer=Path(ckpts["tokenizer"]),
            wm_act=Path(ckpts["wm_act"]), wm_txt=Path(ckpts["wm_txt"]), proxy=Path(ckpts["proxy"]),
            train_data=Path(self.preset["data"]["train"]), out=self.out / "reward_check"))
        settings = self._stage_settings("reward_check", ("tokenizer", "wm_act", "wm_txt", "proxy"))
        if self._stage_is_current("reward_check", "reward_check.json", settings):
            return False
        run_reward_check(config)
        atomic_write_json(config.out / STAGE_RECORD, settings)
        return True

    def _wm_eval(self) -> bool:
        """The world-model table: copied from a shipped eval-wm result, or computed here; False when
        its output is current (skipped)."""
        spec = self.preset["wm_eval"]
        target = self.out / "wm_eval" / "metrics.json"
        settings = self._stage_settings("wm_eval", ("tokenizer", "wm_act", "wm_txt"))
        if "copy_from" in spec:
            settings["copy_from_digest"] = self._digest(spec["copy_from"])
        if self._stage_is_current("wm_eval", target.name, settings):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        if "copy_from" in spec:
            shutil.copyfile(spec["copy_from"], target)
        else:
            from roboscape_r.worldmodel.evaluate import EvalWMConfig, run_evaluation

            ckpts = self.preset["checkpoints"]
            run_evaluation(_override(EvalWMConfig, spec, EvalWMConfig(
                data=Path(self.preset["data"]["heldout"]), tokenizer=Path(ckpts["tokenizer"]),
                wm_act=Path(ckpts["wm_act"]), wm_txt=Path(ckpts["wm_txt"]), out=target.parent)))
        atomic_write_json(target.parent / STAGE_RECORD, settings)
        return True

    def _stage_settings(self, name: str, models: tuple[str, ...]) -> dict[str, Any]:
        """What a final stage's output depends on: its preset entry, the data and the models' digests."""
        settings = json.loads(json.dumps({key: self.preset.get(key) for key in (name, "data", "tasks")}, default=str))
        settings["checkpoint_digests"] = {model: self._digest(self.preset["checkpoints"].get(model)) for model in models}
        return settings

    def _stage_is_current(self, name: str, output: str, settings: dict[str, Any]) -> bool:
        """True if the stage's output exists and was made with `settings` (or predates the record).
        Output made with other settings (a retrained model, another preset entry) is moved aside to
        `<name>.replaced-<k>`, never deleted, so the stage runs again."""
        folder = self.out / name
        if not (folder / output).is_file():
            return False
        record = folder / STAGE_RECORD
        if not record.is_file() or json.loads(record.read_text()) == settings:
            return True
        k = 1
        while (self.out / f"{name}.replaced-{k}").exists():
            k += 1
        folder.rename(self.out / f"{name}.replaced-{k}")
        print(f"[experiment] {name}: made with other models or settings; moved to {name}.replaced-{k}, running again")
        return False


def _loss_mismatch(recorded: list[dict], redone: list[dict], key: str, rtol: float = 1e-3) -> str | None:
    """Where two training runs' metrics rows disagree on `key` (relative tolerance rtol), or None."""
    old = {row["step"]: row[key] for row in recorded if key in row and "step" in row}
    new = {row["step"]: row[key] for row in redone if key in row and "step" in row}
    if set(old) != set(new):
        return f"logged steps differ: {len(old)} recorded, {len(new)} now"
    for step in sorted(old):
        if abs(new[step] - old[step]) > rtol * max(abs(old[step]), 1e-12):
            return f"{key} at step {step}: {old[step]:.6g} recorded, {new[step]:.6g} now"
    return None


def run_experiment(args: ExperimentArgs) -> Path:
    """Run (or resume) an experiment; returns its folder."""
    preset = load_preset(args.preset)
    for key, path in (("train", args.train_data), ("heldout", args.heldout_data)):
        if path is not None:
            preset["data"] = {**preset["data"], key: str(path)}
    out = args.out or Path("runs") / f"experiment-{preset['name']}"
    Experiment(preset, out, args.only).run()
    if args.report:
        from roboscape_r.report import build_report

        result = build_report(out)
        print(f"[experiment] report: {result.html} and {result.markdown}")
        for line in result.missing:
            print(f"[experiment] missing from the report: {line}")
    return out
