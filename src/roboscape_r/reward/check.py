"""Reward validity check (`roboscape reward-check`): do the rewards track real task progress?

On held-out dataset episodes (in-domain and OOD scenes, successful and failed), every reward is
computed along the episode's real frames: r_t for the frame after the t-th action, t = 1..L.

* `sim`: ManiSkill's normalised dense reward stored in the dataset (the reference).
* `general`: ours. Its golden trajectory comes from WM_txt (`WorldModelRollout.generate_golden`
  from the episode's first frame and instruction, min(golden_max_steps, L) frames). Its done
  probability is WM_act's, teacher-forced on the real frames and actions
  (`worldmodel.evaluate.teacher_forced_done_probs`); without --wm-act it is 0, so only the
  alignment term is measured. Its two terms are also scored on their own (`components`:
  `general/alignment` and `general/done`), to show which one tracks progress.
* `embedding`, `proxy`: the baselines (see their modules).

A reward whose checkpoint (or tokenizer, or goal data) is missing is skipped, and the output
says which file was missing; a checkpoint that exists but is corrupt or of the wrong kind is an
error.

Metrics per reward and split (in-domain, each OOD factor, all OOD, all):

* `spearman_progress`: Spearman correlation of r_1..r_L with progress t / L along each
  successful episode, averaged over those episodes (episodes with a constant reward, where it
  is undefined, are counted in `spearman_undefined` and left out).
* `auroc_mean_return`: AUROC of the per-episode mean reward (the return divided by the length)
  for successful (success at any step) vs failed episodes. `auroc_sum_return` uses the plain
  return, which also rewards longer episodes (failed random episodes are shorter here).

Writes `reward_check.json` and `reward_check.png` (every reward min-max normalised along one
successful OOD PickCube episode) into the output folder.

A check of the full held-out set takes about half an hour on a CPU, most of it the general reward's
golden trajectories. Each reward's finished batches go to a journal (`OUT/<reward>.journal.jsonl`,
:class:`roboscape_r.journal.Journal`), so a check stopped part-way resumes where it stopped and
writes what a straight run would; a journal made with other settings, data or model weights is set
aside. The journals are removed once reward_check.json is written.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from roboscape_r.atomic import atomic_write_json
from roboscape_r.journal import Journal
from roboscape_r.reward.base import EpisodeContext, WorldModelReward, make_reward
from roboscape_r.worldmodel.data import encode_episode
from roboscape_r.worldmodel.frame_metrics import auroc

REWARD_ORDER = ("sim", "general", "embedding", "proxy")


@dataclass(frozen=True)
class RewardCheckConfig:
    """Score rewards along real held-out episodes: correlation with progress, success vs failure."""

    data: Path = Path("data/heldout")
    """Held-out dataset folder (in-domain and OOD scenes) written by `roboscape collect`."""
    tokenizer: Path | None = Path("checkpoints/small/tokenizer.pt")
    """Tokenizer checkpoint (file or run folder): the general and embedding rewards need it."""
    wm_act: Path | None = None
    """WM_act checkpoint: the general reward's done probability (0 without it)."""
    wm_txt: Path | None = None
    """WM_txt checkpoint: the general reward's golden trajectories (the general reward is skipped without it)."""
    wm_txt_spatial_head: Path | None = None
    """Spatial head fitted to WM_txt (`roboscape train-spatial-head`): golden frames decoded token by token."""
    proxy: Path | None = None
    """Proxy reward checkpoint from `roboscape train-proxy-reward` (skipped without it)."""
    goals: Path | None = None
    """Goal-embedding file of the embedding reward; when missing it is computed from --train-data and
    written here (default OUT/goal_embeddings.json)."""
    train_data: Path | None = Path("data/train")
    """Training dataset whose successful expert demos define the embedding reward's goals."""
    out: Path = Path("runs/reward_check")
    """Output folder: reward_check.json, reward_check.png."""
    max_episodes: int | None = None
    """Most episodes per split (a seeded random subset); None takes all."""
    golden_max_steps: int = 100
    """Most frames WM_txt generates per golden trajectory."""
    text_encoder: Literal["minilm", "t5"] = "minilm"
    """Instruction encoder of WM_txt (the one it was trained with)."""
    temperature: float = 0.0
    """Sampling temperature of WM_txt (0 = greedy)."""
    general_alignment: Literal["absolute", "gain"] = "absolute"
    """The general reward's alignment term (`roboscape_r.reward.general`): "absolute" or "gain"
    (improvement over the start frame)."""
    batch_size: int = 32
    """Episodes per batched reward pass (and per batch of WM_txt golden trajectories)."""
    seed: int = 0
    """Seed of episode selection and WM_txt sampling."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu' or 'cuda[:N]'."""
    num_threads: int | None = None
    """torch CPU threads (None leaves torch's default)."""
    env_module: str | None = None
    """Python module to import first; scenes it registers get their split from it."""
    progress: bool = True
    """Show tqdm progress bars."""

    def __post_init__(self) -> None:
        if self.max_episodes is not None and (not isinstance(self.max_episodes, int) or self.max_episodes < 1):
            raise ValueError(f"--max-episodes must be a positive int or None, got {self.max_episodes!r}")
        for name in ("golden_max_steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive int, got {value!r}")
        if self.temperature < 0:
            raise ValueError(f"--temperature must be >= 0, got {self.temperature}")


@dataclass
class CheckEpisode:
    """One held-out episode, read whole."""

    split: str
    scene: str
    task: str
    instruction: str
    frames: torch.Tensor
    """uint8 (L+1, H, W, 3)."""
    actions: torch.Tensor
    """float32 (L, A)."""
    sim_rewards: np.ndarray
    """float32 (L,): the dataset's dense reward of frame t+1."""
    successful: bool
    """Success at any step."""

    @property
    def length(self) -> int:
        return len(self.actions)


# ------------------------------------------------------------------------------------ metrics


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, ties sharing their mean rank."""
    values = np.asarray(values, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (Pearson correlation of average ranks); None if either is constant."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"spearman needs two arrays of one length, got {x.shape} and {y.shape}")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    rank_x, rank_y = average_ranks(x), average_ranks(y)
    rank_x, rank_y = rank_x - rank_x.mean(), rank_y - rank_y.mean()
    return float((rank_x * rank_y).sum() / np.sqrt((rank_x**2).sum() * (rank_y**2).sum()))


def reward_metrics(rewards: list[np.ndarray], successful: list[bool]) -> dict[str, Any]:
    """The metrics of the module docstring for one reward over a set of episodes.

    Args:
        rewards: per episode, float (L,) rewards r_1..r_L.
        successful: per episode, whether it succeeded.
    """
    correlations = [spearman(r, np.arange(1, len(r) + 1)) for r, ok in zip(rewards, successful) if ok]
    defined = [c for c in correlations if c is not None]
    labels = np.asarray(successful, dtype=bool)
    return {
        "episodes": len(rewards), "successful": int(labels.sum()), "failed": int((~labels).sum()),
        "spearman_progress": float(np.mean(defined)) if defined else None,
        "spearman_undefined": len(correlations) - len(defined),
        "auroc_mean_return": auroc(np.array([r.mean() for r in rewards]), labels) if rewards else None,
        "auroc_sum_return": auroc(np.array([r.sum() for r in rewards]), labels) if rewards else None,
    }


# --------------------------------------------------------------------------------------- data


def load_check_episodes(root: Path, *, max_episodes: int | None, seed: int) -> list[CheckEpisode]:
    """Read up to `max_episodes` episodes of every split of a dataset (seeded subset), split by split.

    Raises:
        roboscape_r.data.format.DatasetError: no dataset at `root` or a corrupt shard.
        ValueError: the dataset holds no episodes.
    """
    from roboscape_r.data.format import iter_episode_meta, read_episode, read_manifest
    from roboscape_r.worldmodel.evaluate import _split_order, split_of_scene

    root = Path(root)
    metas = [dict(meta, shard=shard) for shard, meta in iter_episode_meta(read_manifest(root))]
    if not metas:
        raise ValueError(f"dataset {root} holds no episodes; collect some with `roboscape collect`")
    by_split: dict[str, list[dict]] = defaultdict(list)
    for meta in metas:
        by_split[split_of_scene(meta["scene"])].append(meta)
    rng = np.random.default_rng(seed)
    episodes = []
    for split in _split_order(set(by_split)):
        chosen = by_split[split]
        if max_episodes is not None and len(chosen) > max_episodes:
            chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), max_episodes, replace=False))]
        for meta in chosen:
            raw = read_episode(root / meta["shard"], meta["episode_index"])
            episodes.append(CheckEpisode(split, meta["scene"], meta["task"], str(meta["instruction"]),
                                         torch.from_numpy(raw["frames"]), torch.from_numpy(raw["actions"]).float(),
                                         raw["rewards"].astype(np.float32), bool(raw["success"].any())))
    return episodes


# ------------------------------------------------------------------------------------ rewards


GoldenFn = Callable[[list[CheckEpisode], int, int], torch.Tensor]
"""(episodes of a batch, steps, batch number) -> uint8 golden frames (B, T, H, W, 3). The batch
number seeds any sampling, so that a batch's golden frames do not depend on the batches before it
(a resumed check skips those)."""

JOURNAL_FORMAT = "roboscape-reward-check-journal-v1"
_NOT_IN_KEY = ("out", "progress", "num_threads", "device")
"""Config fields that do not change a reward's values: where the output goes and how the check runs."""


@torch.inference_mode()
def rewards_along_episodes(reward: WorldModelReward, episodes: list[CheckEpisode], done_probs: list[np.ndarray],
                           *, batch_size: int, golden_fn: GoldenFn | None = None,
                           device: torch.device | str = "cpu", progress: bool = False,
                           journal: Journal | None = None) -> list[np.ndarray]:
    """Run a world-model reward along the real frames of episodes, `batch_size` episodes at a time.

    Episodes are batched in order of length. The episodes of a batch step together for the longest
    one's length; a shorter episode repeats its last frame (and done probability) and those extra
    rewards are dropped, which leaves its own rewards unchanged because every reward is causal per env.

    Args:
        done_probs: per episode, float (L,): done probability of frame t+1 (zeros if unknown).
        golden_fn: makes the golden frames of a batch; required when `reward.needs_golden`.
        device: where frames and done probabilities are sent (the reward's models' device).
        journal: batches it holds are taken from it instead of computed; each computed batch is
            appended to it. Its key must pin everything the rewards depend on (`reward_journal`).

    Returns:
        Per episode, float32 (L,) rewards r_1..r_L.
    """
    if reward.needs_golden and golden_fn is None:
        raise ValueError(f"the {reward.name!r} reward needs golden trajectories; pass golden_fn")
    # Batches of similar lengths waste fewer padded steps: on the 184 held-out episodes (14,715 real
    # frames) batches of 32 run 16,480 frames sorted instead of 26,336 in dataset order.
    order = sorted(range(len(episodes)), key=lambda i: episodes[i].length)
    results: list[np.ndarray | None] = [None] * len(episodes)
    journaled: dict[int, np.ndarray] = {}
    for entry in journal.read() if journal is not None else []:
        for index, values in zip(entry["episodes"], entry["rewards"]):
            journaled[int(index)] = np.asarray(values, dtype=np.float32)
    if journaled and progress:
        print(f"[reward-check] {reward.name}: {len(journaled)} episode(s) kept from {journal.path}", flush=True)
    batches = range(0, len(episodes), batch_size)
    for number, first in enumerate(tqdm(batches, desc=reward.name, unit="batch", disable=not progress)):
        members = order[first:first + batch_size]
        if all(i in journaled and len(journaled[i]) == episodes[i].length for i in members):
            for i in members:
                results[i] = journaled[i]
            continue
        chunk = [episodes[i] for i in members]
        chunk_done = [torch.from_numpy(np.asarray(done_probs[i], dtype=np.float32)) for i in members]
        steps = max(e.length for e in chunk)
        first_frames = torch.stack([e.frames[0] for e in chunk]).to(device)
        golden = golden_fn(chunk, steps, number).to(device) if reward.needs_golden else None
        reward.reset(EpisodeContext(first_frames, [e.task for e in chunk], [e.instruction for e in chunk], golden))
        per_step = []
        for t in range(1, steps + 1):
            frames = torch.stack([e.frames[min(t, e.length)] for e in chunk]).to(device)  # (B, H, W, 3)
            done = torch.stack([d[min(t, len(d)) - 1] for d in chunk_done]).to(device)  # (B,)
            per_step.append(reward(frames, done).float().cpu())
        table = torch.stack(per_step, dim=1).numpy()  # (B, steps)
        for b, (i, e) in enumerate(zip(members, chunk)):
            results[i] = table[b, : e.length].copy()
        if journal is not None:  # float32 -> JSON float -> float32 is exact: a resumed check matches
            journal.append({"episodes": members, "rewards": [results[i].tolist() for i in members]})
    return results


def reward_journal(config: RewardCheckConfig, name: str, inputs: dict[str, Any]) -> Journal:
    """The journal of one reward's values in a check (`OUT/<name>.journal.jsonl`).

    Its key: the check's settings (less where its output goes and how it runs), the held-out
    dataset's manifest digest, and `inputs`, the digests of whatever the reward was computed from
    (model weights, goal files) and its description.
    """
    from roboscape_r.data.format import MANIFEST_NAME, sha256_file
    from roboscape_r.worldmodel.evaluate_report import jsonable

    settings = {k: v for k, v in jsonable(dataclasses.asdict(config)).items() if k not in _NOT_IN_KEY}
    key = jsonable({**settings, "data_manifest_sha256": sha256_file(Path(config.data) / MANIFEST_NAME),
                    "reward": name, "inputs": inputs})
    return Journal(Path(config.out) / f"{name}.journal.jsonl", JOURNAL_FORMAT, key)


def _skip_reason(flag: str, path: Path | None) -> str | None:
    if path is None:
        return f"not given ({flag})"
    if not Path(path).exists():
        return f"{flag} {path} does not exist"
    return None


def run_reward_check(config: RewardCheckConfig, *, text_encoder: Any | None = None) -> dict[str, Any]:
    """Load the rewards that are available, score them on the held-out episodes, write the outputs.

    Args:
        config: the check's options.
        text_encoder: WM_txt's instruction encoder (default `make_text_encoder(config.text_encoder)`).

    Returns:
        The dict written to reward_check.json.

    Raises:
        roboscape_r.data.format.DatasetError: no dataset at --data, or a corrupt shard.
        roboscape_r.checkpoint.CheckpointError: an existing checkpoint that is corrupt or of the
            wrong kind (the message names the flag).
        ValueError: an empty dataset, or frames/tokens/actions the models cannot take.
    """
    from roboscape_r.checkpoint import CheckpointError, weights_digest
    from roboscape_r.data.format import sha256_file
    from roboscape_r.data.scenes import import_env_module
    from roboscape_r.reward.check_report import write_example_figure
    from roboscape_r.tokenizer.train import resolve_device
    from roboscape_r.worldmodel.evaluate import check_compatible, teacher_forced_done_probs
    from roboscape_r.worldmodel.evaluate_report import jsonable

    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    import_env_module(config.env_module)
    device = resolve_device(config.device)

    def load(flag: str, loader: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return loader(*args, **kwargs)
        except CheckpointError as error:
            raise CheckpointError(f"{flag}: {error}") from error

    episodes = load_check_episodes(config.data, max_episodes=config.max_episodes, seed=config.seed)
    status: dict[str, dict[str, Any]] = {"sim": {"status": "ok", "describe": {
        "name": "sim", "source": "the dataset's `rewards` (ManiSkill normalised dense reward)"}}}
    per_reward: dict[str, list[np.ndarray]] = {"sim": [e.sim_rewards for e in episodes]}
    notes: dict[str, str] = {}
    components: dict[str, list[np.ndarray]] = {}

    tokenizer = None
    tokenizer_missing = _skip_reason("--tokenizer", config.tokenizer)
    if tokenizer_missing is None:
        from roboscape_r.tokenizer import load_tokenizer

        tokenizer = load("--tokenizer", load_tokenizer, config.tokenizer, map_location=device)
        size = tuple(episodes[0].frames.shape[1:3])
        if size != (tokenizer.image_size, tokenizer.image_size):
            raise ValueError(f"--data has {size[0]}x{size[1]} frames but --tokenizer takes {tokenizer.image_size}x"
                             f"{tokenizer.image_size}; pass the tokenizer trained on this image size")

    def skip(name: str, reason: str) -> None:
        status[name] = {"status": "skipped", "reason": reason}

    journals: list[Journal] = []

    def compute(name: str, reward: WorldModelReward, done_probs: list[np.ndarray], inputs: dict[str, Any],
                golden_fn=None) -> None:
        journal = reward_journal(config, name, {**inputs, "describe": reward.describe()})
        journals.append(journal)
        per_reward[name] = rewards_along_episodes(reward, episodes, done_probs, batch_size=config.batch_size,
                                                  golden_fn=golden_fn, device=device, progress=config.progress,
                                                  journal=journal)
        if journal.stale is not None and config.progress:
            print(f"[reward-check] {journal.stale}: made with other settings, data or weights; set aside", flush=True)
        status[name] = {"status": "ok", "describe": reward.describe()}

    zeros = [np.zeros(e.length, np.float32) for e in episodes]

    # general: WM_txt golden trajectories + WM_act teacher-forced done probabilities.
    wm_txt_missing = _skip_reason("--wm-txt", config.wm_txt)
    if tokenizer is None or wm_txt_missing is not None:
        skip("general", f"needs a tokenizer and WM_txt: {tokenizer_missing or wm_txt_missing}")
    else:
        from roboscape_r.worldmodel.rollout import WorldModelRollout
        from roboscape_r.worldmodel.train import load_world_model

        wm_txt = load("--wm-txt", load_world_model, config.wm_txt, "txt", map_location=device)
        check_compatible(tokenizer, wm_txt, "--wm-txt")
        if text_encoder is None:
            from roboscape_r.worldmodel.text_encoder import make_text_encoder

            text_encoder = make_text_encoder(config.text_encoder)
        if text_encoder.dim != wm_txt.config.text_dim:
            raise ValueError(f"--wm-txt takes {wm_txt.config.text_dim}-D instruction embeddings but the text encoder "
                             f"makes {text_encoder.dim}-D ones; pass the --text-encoder it was trained with")
        head = None
        if config.wm_txt_spatial_head is not None:
            from roboscape_r.worldmodel.spatial_head import load_spatial_head

            head = load("--wm-txt-spatial-head", load_spatial_head, config.wm_txt_spatial_head, wm_txt, device)
        rollout = WorldModelRollout(wm_txt, tokenizer, temperature=config.temperature, seed=config.seed,
                                    spatial_head=head)

        def golden_fn(chunk: list[CheckEpisode], steps: int, batch: int) -> torch.Tensor:
            embeddings = text_encoder.encode([e.instruction for e in chunk]).to(device)
            first = torch.stack([e.frames[0] for e in chunk])
            return rollout.generate_golden(first, embeddings, min(config.golden_max_steps, steps),
                                           seed=config.seed + batch).frames_uint8

        wm_act_missing = _skip_reason("--wm-act", config.wm_act)
        if wm_act_missing is None:
            wm_act = load("--wm-act", load_world_model, config.wm_act, "act", map_location=device)
            check_compatible(tokenizer, wm_act, "--wm-act")
            if episodes[0].actions.shape[1] != wm_act.config.action_dim:
                raise ValueError(f"--data has {episodes[0].actions.shape[1]}-D actions but --wm-act takes "
                                 f"{wm_act.config.action_dim}-D ones")
            with torch.inference_mode():
                tokens = [encode_episode(tokenizer, e.frames.to(device), wm_act.config.token_hysteresis).cpu()
                          for e in tqdm(episodes, desc="tokenise", unit="episode", disable=not config.progress)]
            done_probs = teacher_forced_done_probs(wm_act, tokens, [e.actions for e in episodes])
            notes["general_done"] = "WM_act's done probability, teacher-forced on the real frames and actions"
        else:
            done_probs = zeros
            notes["general_done"] = f"done probability 0 ({wm_act_missing}): the alignment term only"
        general = make_reward("general", tokenizer=tokenizer, alignment=config.general_alignment)
        inputs = {"tokenizer": weights_digest(tokenizer), "wm_txt": weights_digest(wm_txt),
                  "wm_act": weights_digest(wm_act) if wm_act_missing is None else None,
                  "spatial_head": weights_digest(head) if head is not None else None}
        compute("general", general, done_probs, inputs, golden_fn)
        # Its two terms, scored like rewards, to say which one tracks progress: r_t = align_t + w * p_done_t.
        weight = general.config.done_weight
        components["general/alignment"] = [r - weight * p for r, p in zip(per_reward["general"], done_probs)]
        components["general/done"] = [weight * np.asarray(p, np.float32) for p in done_probs]

    # embedding: goals from the training set's successful expert demos.
    goals = config.goals if config.goals is not None else Path(config.out) / "goal_embeddings.json"
    if tokenizer is None:
        skip("embedding", f"needs a tokenizer: {tokenizer_missing}")
    elif not goals.is_file() and _skip_reason("--train-data", config.train_data) is not None:
        skip("embedding", f"no goal embeddings: --goals {goals} does not exist and "
                          f"{_skip_reason('--train-data', config.train_data)} to compute them")
    else:
        embedding = make_reward("embedding", tokenizer=tokenizer, goals=goals, dataset=config.train_data,
                                progress=config.progress)
        compute("embedding", embedding, zeros, {"tokenizer": weights_digest(tokenizer), "goals": sha256_file(goals)})

    proxy_missing = _skip_reason("--proxy", config.proxy)
    if proxy_missing is not None:
        skip("proxy", proxy_missing)
    else:
        proxy = load("--proxy", make_reward, "proxy", checkpoint=config.proxy, device=device)
        compute("proxy", proxy, zeros, {"proxy": weights_digest(proxy.net)})

    result = summarize(episodes, per_reward, components)
    result = jsonable({"config": dataclasses.asdict(config), "rewards": {n: status[n] for n in REWARD_ORDER},
                       "notes": notes, **result})
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    example = result["example"]
    if example is not None:
        write_example_figure(out / "reward_check.png", episodes[example["episode"]],
                             {name: per_reward[name][example["episode"]] for name in REWARD_ORDER if name in per_reward},
                             example["kind"])
    atomic_write_json(out / "reward_check.json", result)
    for journal in journals:
        journal.finish()
    return result


def summarize(episodes: list[CheckEpisode], per_reward: dict[str, list[np.ndarray]],
              components: dict[str, list[np.ndarray]] | None = None) -> dict[str, Any]:
    """Metrics per split ("in-domain", "ood/<factor>", ..., "ood", "all") and reward, the chosen
    example episode (index, kind) and a per-episode table of mean rewards. ``components`` (terms of a
    reward, such as "general/alignment") are scored the same way, under "components"."""
    splits = list(dict.fromkeys(e.split for e in episodes))
    groups = {split: [i for i, e in enumerate(episodes) if e.split == split] for split in splits}
    ood = [i for i, e in enumerate(episodes) if e.split.startswith("ood/")]
    if ood:
        groups["ood"] = ood
    groups["all"] = list(range(len(episodes)))
    names = [n for n in REWARD_ORDER if n in per_reward]
    metrics = {split: {name: reward_metrics([per_reward[name][i] for i in members],
                                            [episodes[i].successful for i in members]) for name in names}
               for split, members in groups.items()}
    components = components or {}
    component_metrics = {split: {name: reward_metrics([values[i] for i in members],
                                                      [episodes[i].successful for i in members])
                                 for name, values in components.items()}
                         for split, members in groups.items() if components}
    table = [{"split": e.split, "scene": e.scene, "task": e.task, "successful": e.successful, "length": e.length,
              "mean_reward": {name: float(per_reward[name][i].mean()) for name in names},
              **({"mean_term": {name: float(values[i].mean()) for name, values in components.items()}}
                 if components else {})}
             for i, e in enumerate(episodes)]
    return {"splits": metrics, "components": component_metrics, "example": choose_example(episodes),
            "episodes": table}


def choose_example(episodes: list[CheckEpisode]) -> dict[str, Any] | None:
    """The episode the figure shows: the first successful OOD PickCube one, else the first successful
    OOD one, else the first successful one; None if no episode succeeded."""
    preferences = [("successful OOD PickCube", lambda e: e.split.startswith("ood/") and e.task == "PickCube"),
                   ("successful OOD", lambda e: e.split.startswith("ood/")), ("successful", lambda e: True)]
    for kind, accept in preferences:
        for i, e in enumerate(episodes):
            if e.successful and accept(e):
                return {"episode": i, "kind": kind, "scene": e.scene, "task": e.task, "instruction": e.instruction,
                        "length": e.length}
    return None
