"""One policy per task behind the common policy API: the paper's per-task simulator baseline.

The paper trains its physics-simulator baseline as one policy per task. Evaluation runs every
task through `load_policy(path).act(frames, instructions)`, so a `TaskRouter` sends each row to
the policy of the task its instruction belongs to. It is described by a small JSON file,

    {"format": "roboscape-policy-router", "version": 1,
     "policies": {"PickCube": "PickCube", "PushCube": "PushCube"},     # paths relative to the file
     "instructions": {"PickCube": ["pick up the cube", ...]}}          # optional

and `load_policy` reads that file, or a folder holding it as ``router.json``. A task's
instructions default to the project's paraphrases (`roboscape_r.data.scenes.instructions()`);
list them under "instructions" for tasks of a user env module that has its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roboscape_r.atomic import atomic_write_json
from roboscape_r.checkpoint import CheckpointError

ROUTER_FORMAT = "roboscape-policy-router"
ROUTER_VERSION = 1
ROUTER_FILE = "router.json"
"""Name of the router file inside a folder passed to `load_policy`."""


def router_path(path: str | Path) -> Path | None:
    """The router file that `path` names (the file, or ROUTER_FILE inside a folder); None if none."""
    path = Path(path)
    if path.is_dir():
        path = path / ROUTER_FILE
    return path if path.suffix == ".json" and path.is_file() else None


class TaskRouter:
    """Routes each row of a batch to the policy of its instruction's task."""

    def __init__(self, policies: Mapping[str, Any], instructions: Mapping[str, Sequence[str]],
                 source: Path | None = None) -> None:
        """Args:
            policies: task name -> a policy with `act(frames, instructions)`, `image_size` and `action_dim`.
            instructions: task name -> the instructions that select it (every task of `policies`).
            source: the router file, for reports.

        Raises:
            ValueError: no policies, a task without instructions, an instruction claimed by two
                tasks, or policies that disagree on image size or action dimension.
        """
        if not policies:
            raise ValueError("a task router needs at least one policy")
        missing = [task for task in policies if not instructions.get(task)]
        if missing:
            raise ValueError(f"no instructions are known for task(s) {missing}; list them under 'instructions' "
                             "in the router file")
        self.task_of: dict[str, str] = {}
        for task in policies:
            for text in instructions[task]:
                other = self.task_of.setdefault(text, task)
                if other != task:
                    raise ValueError(f"instruction {text!r} belongs to both {other} and {task}; a router needs "
                                     "each instruction to name one task")
        sizes = {task: (int(p.image_size), int(p.action_dim)) for task, p in policies.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"the routed policies disagree on (image size, action dim): {sizes}")
        self.policies = dict(policies)
        self.source = source
        self.image_size, self.action_dim = next(iter(sizes.values()))
        self.trainer = "router"
        self.step = sum(int(getattr(p, "step", 0) or 0) for p in self.policies.values())

    def act(self, frames_uint8: np.ndarray, instructions: Sequence[str]) -> np.ndarray:
        """Actions float32 (B, action_dim): each row from the policy of its instruction's task.

        Raises:
            ValueError: an instruction of no routed task, or a number of instructions other than B.
        """
        if isinstance(instructions, str) or len(instructions) != len(frames_uint8):
            raise ValueError(f"got {len(frames_uint8)} frames but instructions {instructions!r}; pass one string "
                             "per frame")
        unknown = sorted({text for text in instructions if text not in self.task_of})
        if unknown:
            raise ValueError(f"instruction(s) {unknown} belong to none of the routed tasks "
                             f"{sorted(self.policies)}; add them under 'instructions' in the router file")
        tasks = np.array([self.task_of[text] for text in instructions])
        actions = np.empty((len(instructions), self.action_dim), np.float32)
        for task in dict.fromkeys(tasks.tolist()):
            rows = np.flatnonzero(tasks == task)
            actions[rows] = self.policies[task].act(frames_uint8[rows], [instructions[i] for i in rows])
        return actions


def write_router(path: str | Path, policies: Mapping[str, str | Path],
                 instructions: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Write a router file (atomically). `policies` maps task -> policy checkpoint or run folder;
    paths inside the router file's folder are stored relative to it, so the folder can move."""
    path = Path(path)
    entries = {}
    for task, target in policies.items():
        target = Path(target)
        try:
            entries[task] = str(target.resolve().relative_to(path.parent.resolve()))
        except ValueError:
            entries[task] = str(target.resolve())
    document: dict[str, Any] = {"format": ROUTER_FORMAT, "version": ROUTER_VERSION, "policies": entries}
    if instructions:
        document["instructions"] = {task: list(texts) for task, texts in instructions.items()}
    atomic_write_json(path, document)
    return path


def load_router(path: str | Path, *, device: Any = "cpu", text_encoder: Any = None) -> TaskRouter:
    """Load a router file (or a folder holding ROUTER_FILE) and every policy it names.

    Raises:
        roboscape_r.checkpoint.CheckpointError: unreadable or malformed router file, or a routed
            policy that is missing or corrupt (the task is named).
        ValueError: see `TaskRouter`.
    """
    from roboscape_r.data.scenes import instructions as known_instructions
    from roboscape_r.policy.api import load_policy

    file = router_path(path)
    if file is None:
        raise CheckpointError(f"{path} is neither a router file nor a folder with {ROUTER_FILE}")
    try:
        document = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"router file {file} is unreadable or not JSON ({err}); write it again with "
                              "roboscape_r.policy.router.write_router") from err
    if not isinstance(document, dict) or document.get("format") != ROUTER_FORMAT:
        raise CheckpointError(f"{file} is not a policy router file (format {ROUTER_FORMAT!r} expected)")
    if document.get("version") != ROUTER_VERSION:
        raise CheckpointError(f"router file {file} has version {document.get('version')!r}; this library reads "
                              f"version {ROUTER_VERSION}")
    entries = document.get("policies")
    if not isinstance(entries, dict) or not entries:
        raise CheckpointError(f"router file {file} names no policies ('policies': {{task: path}})")
    policies = {}
    for task, target in entries.items():
        target = Path(target) if Path(target).is_absolute() else file.parent / target
        try:
            policies[task] = load_policy(target, device=device, text_encoder=text_encoder)
        except CheckpointError as err:
            raise CheckpointError(f"router file {file}, task {task}: {err}") from err
    instructions = {**known_instructions(), **(document.get("instructions") or {})}
    return TaskRouter(policies, {task: instructions.get(task, []) for task in policies}, source=file)
