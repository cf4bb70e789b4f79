"""Refit WM_act's done head on frozen features, chosen on episodes it never saw (`roboscape refit-done`).

Why: trained jointly with next-token prediction, the done head fits the training episodes almost
exactly (train BCE about 1e-7 for the shipped WM_act) and generalises poorly. The backbone's
features can still tell success from failure; a fresh head fitted on them with weight decay and
early stopping, both chosen on validation episodes, generalises better. Only `done_head`
changes, so the frames the model predicts stay exactly the same.

Procedure:

1. Tokenise the fitting episodes (--data) and the validation episodes (--val-data, a collection
   the backbone never saw; or an episode split of --data) and compute the done head's input for
   every step, teacher-forced (`teacher_forced_pooled_features`).
2. For each weight decay of a grid, train a new head (the model's own architecture, fresh
   initialisation, full-batch AdamW on the train features with the success label of the state
   after each action) and score it on the validation features every `eval_every` steps.
3. Keep the (weight decay, step) with the highest validation AUROC (ties: lower validation BCE),
   write the model with that head, and a JSON of every candidate's curve.

A held-out dataset such as `data/heldout` stays untouched for `roboscape eval-wm`. Validation
scores choose the head; they are not the result to report.

Measured on WM_act as trained (held-out AUROC over all of `data/heldout`, which played no part in
any fit, 95% interval over resampled episodes; in-domain 48 episodes, OOD 136):

* the jointly trained head: in-domain 0.826 [0.73, 0.90], OOD 0.747;
* fit on the backbone's own training episodes (`data/train`, 320), chosen on a fresh 64-episode
  collection (`data/calib`, seed 2): in-domain 0.840, OOD 0.786. The features of episodes the
  backbone was trained on are not those it makes for new episodes;
* fit on the fresh collection itself (48 episodes, 16 to choose): in-domain 0.780, OOD 0.685, too
  few episodes;
* fit on a larger fresh collection (`data/train_seed3`, 960 in-domain episodes, seed 3), chosen on
  `data/calib`: in-domain 0.959 [0.92, 0.98], OOD 0.833 [0.78, 0.88]; the shipped head. Per task
  in-domain 0.90-0.98 (PickCube 0.63 -> 0.98). So the defaults: fit on episodes the backbone
  never saw, as many as there are.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.worldmodel.frame_metrics import auroc


@dataclass(frozen=True)
class RefitDoneConfig:
    """Refit WM_act's done head on frozen features with weight decay and early stopping."""

    wm_act: Path = Path("checkpoints/small/wm_act.pt")
    """WM_act checkpoint whose done head is refitted (file or run folder)."""
    tokenizer: Path = Path("checkpoints/small/tokenizer.pt")
    """The tokenizer WM_act was trained with."""
    data: Path = Path("data/train_seed3")
    """Dataset the head is fitted on (all of it with --val-data, else split by episode). Best: many
    episodes the backbone never saw (features of its own training episodes are memorised)."""
    val_data: Path | None = Path("data/calib")
    """Validation dataset the head is chosen on: episodes the backbone never saw (a collection
    with its own --seed). On the backbone's training episodes the features are memorised and
    every head looks perfect (validation AUROC 1.0 for the shipped WM_act), so the choice would
    mean nothing. None: split --data by episode instead (--val-fraction)."""
    out: Path = Path("runs/refit_done")
    """Output folder: wm_act.pt (weights only, new done head), refit_done.json, and features.pt (the
    teacher-forced features, reused by a rerun on the same model and episodes)."""
    val_fraction: float = 0.25
    """Share of --data's episodes held out for choosing the head (without --val-data)."""
    split_seed: int = 0
    """Seed of the train/validation episode split (the one `roboscape train-wm` used)."""
    weight_decays: tuple[float, ...] = (0.0, 0.1, 1.0, 3.0, 10.0, 30.0)
    """Weight decays tried (AdamW, decoupled)."""
    steps: int = 3000
    """Full-batch optimizer steps per weight decay."""
    eval_every: int = 25
    """Validation scoring interval (steps)."""
    lr: float = 1e-3
    """AdamW learning rate."""
    seed: int = 0
    """Seed of the heads' initialisation."""
    num_threads: int | None = None
    """torch CPU threads (None leaves torch's default)."""
    progress: bool = True
    """Show tqdm progress bars."""
    cache_dir: Path | None = None
    """Token cache folder (default OUT/token_cache)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if not self.weight_decays or any(w < 0 for w in self.weight_decays):
            raise ValueError(f"--weight-decays must be a non-empty list of values >= 0, got {self.weight_decays}")
        for name in ("steps", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive int, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")


@dataclass
class HeadCandidate:
    """The best point of one weight decay's training curve."""

    weight_decay: float
    step: int
    val_auroc: float
    val_bce: float
    train_auroc: float
    state: dict[str, torch.Tensor] = field(repr=False)
    curve: list[dict[str, float]] = field(default_factory=list, repr=False)


def _bce(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(nn.functional.binary_cross_entropy_with_logits(logits, labels))


def fit_done_head(template: nn.Module, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                  *, weight_decay: float, steps: int, eval_every: int, lr: float, seed: int) -> HeadCandidate:
    """Train a fresh copy of `template` (a head: (N, D) -> (N, 1)) on train (features, labels) and
    keep its best validation point.

    Args:
        template: the head whose architecture is copied; its weights are re-initialised.
        train, val: float (N, D) features and float (N,) labels in {0, 1}.

    Raises:
        ValueError: a split with only one class (AUROC undefined), or non-finite features.
    """
    (x_train, y_train), (x_val, y_val) = train, val
    for name, (x, y) in (("train", train), ("validation", val)):
        if not torch.isfinite(x).all():
            raise ValueError(f"the {name} features hold NaN/inf; the world model's weights are broken")
        if y.min() == y.max():
            raise ValueError(f"the {name} episodes have only {'successful' if y.max() > 0 else 'failed'} steps; "
                             f"the done head needs both (collect episodes that fail and succeed)")
    torch.manual_seed(seed)
    head = copy.deepcopy(template).float()
    for module in head.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    best: HeadCandidate | None = None
    curve = []
    for step in range(1, steps + 1):
        head.train()
        loss = nn.functional.binary_cross_entropy_with_logits(head(x_train).squeeze(-1), y_train)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % eval_every and step != steps:
            continue
        head.eval()
        with torch.no_grad():
            val_logits, train_logits = head(x_val).squeeze(-1), head(x_train).squeeze(-1)
        point = {"step": step, "train_bce": float(loss.detach()), "val_bce": _bce(val_logits, y_val),
                 "val_auroc": auroc(val_logits.numpy(), y_val.numpy() > 0.5),
                 "train_auroc": auroc(train_logits.numpy(), y_train.numpy() > 0.5)}
        curve.append(point)
        if best is None or (point["val_auroc"], -point["val_bce"]) > (best.val_auroc, -best.val_bce):
            best = HeadCandidate(weight_decay, step, point["val_auroc"], point["val_bce"], point["train_auroc"],
                                 {k: v.detach().clone() for k, v in head.state_dict().items()})
    assert best is not None  # steps >= 1 scores at least the last step
    best.curve = curve
    return best


def _episode_features(model, episodes: list[dict], progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from roboscape_r.worldmodel.evaluate import teacher_forced_pooled_features

    features = teacher_forced_pooled_features(model, [e["tokens"].long() for e in episodes],
                                              [e["actions"].float() for e in episodes], progress=progress)
    labels = torch.cat([e["success"].float() for e in episodes])
    return torch.cat(features), labels


def _cached_features(model, splits: dict[str, list[dict]], config: RefitDoneConfig):
    """(train, val) pooled features and labels, from OUT/features.pt when it was computed for the
    same world-model weights and episodes, else computed (the slow part: a teacher-forced pass over
    every episode) and written there atomically, so a rerun after a crash skips it."""
    from roboscape_r.atomic import atomic_path
    from roboscape_r.checkpoint import weights_digest

    key = {"world_model_digest": weights_digest(model),
           "episodes": {name: [int(e["tokens"].shape[0]) for e in eps] for name, eps in splits.items()},
           **{k: str(getattr(config, k)) for k in ("data", "val_data", "tokenizer", "val_fraction", "split_seed")}}
    path = Path(config.out) / "features.pt"
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True)
        except Exception as err:  # noqa: BLE001  (a truncated cache is recomputed, not trusted)
            print(f"[refit-done] ignoring unreadable feature cache {path} ({err}); recomputing")
        else:
            if cached.get("key") == key:
                return tuple(cached["train"]), tuple(cached["val"])
    train, val = (_episode_features(model, splits[name], config.progress) for name in ("train", "val"))
    with atomic_path(path) as tmp:
        torch.save({"key": key, "train": list(train), "val": list(val)}, tmp)
    return train, val


def run_refit_done(config: RefitDoneConfig) -> dict[str, Any]:
    """Refit the done head as the module docstring says; returns the dict written to refit_done.json.

    Raises:
        roboscape_r.checkpoint.CheckpointError: a missing/corrupt checkpoint or one of the wrong kind.
        roboscape_r.data.format.DatasetError: no dataset at --data.
        ValueError: tokenizer and WM_act disagree, or the episodes lack successes or failures.
    """
    from roboscape_r.checkpoint import load_checkpoint, save_checkpoint
    from roboscape_r.tokenizer import load_tokenizer
    from roboscape_r.worldmodel.data import fit_and_val_episodes
    from roboscape_r.worldmodel.evaluate import check_compatible
    from roboscape_r.worldmodel.train import load_world_model

    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    started = time.time()
    wm_path = Path(config.wm_act)
    model = load_world_model(wm_path, "act")
    tokenizer = load_tokenizer(config.tokenizer)
    check_compatible(tokenizer, model, "--wm-act")
    cache = config.cache_dir or Path(config.out) / "token_cache"
    splits = fit_and_val_episodes(Path(config.data), config.val_data, tokenizer, Path(config.tokenizer), cache,
                                  val_fraction=config.val_fraction, split_seed=config.split_seed,
                                  hysteresis=model.config.token_hysteresis, progress=config.progress)
    for episodes in splits.values():
        if episodes[0]["actions"].shape[1] != model.config.action_dim:
            raise ValueError(f"--data has {episodes[0]['actions'].shape[1]}-D actions but --wm-act takes "
                             f"{model.config.action_dim}-D ones")
    train, val = _cached_features(model, splits, config)
    before = {}
    for name, (x, y) in (("train", train), ("val", val)):
        with torch.no_grad():
            logits = model.done_head(x).squeeze(-1)
        before[name] = {"auroc": auroc(logits.numpy(), y.numpy() > 0.5), "bce": _bce(logits, y)}
    candidates = [fit_done_head(model.done_head, train, val, weight_decay=wd, steps=config.steps,
                                eval_every=config.eval_every, lr=config.lr, seed=config.seed)
                  for wd in tqdm(config.weight_decays, desc="refit done head", unit="weight decay",
                                 disable=not config.progress)]
    best = max(candidates, key=lambda c: (c.val_auroc, -c.val_bce))
    model.done_head.load_state_dict(best.state)

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    # the config and step of the same file load_world_model read (a run folder keeps them in checkpoints/)
    source = load_checkpoint(wm_path / "checkpoints" if (wm_path / "checkpoints").is_dir() else wm_path,
                             expected_kind="wm_act")
    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
        "episodes": {name: len(eps) for name, eps in splits.items()},
        "steps": {"train": int(train[1].numel()), "val": int(val[1].numel()),
                  "train_positive": int(train[1].sum()), "val_positive": int(val[1].sum())},
        "before": before,
        "chosen": {"weight_decay": best.weight_decay, "step": best.step, "val_auroc": best.val_auroc,
                   "val_bce": best.val_bce, "train_auroc": best.train_auroc},
        "candidates": [{"weight_decay": c.weight_decay, "best_step": c.step, "val_auroc": c.val_auroc,
                        "val_bce": c.val_bce, "curve": c.curve} for c in candidates],
        "wall_s": time.time() - started,
    }
    save_checkpoint(out / "wm_act.pt", kind="wm_act", config=source["config"], model_state=model.state_dict(),
                    step=source["step"], extra={"done_refit": {k: report[k] for k in ("chosen", "steps", "before")}})
    atomic_write_json(out / "refit_done.json", report)
    return report

