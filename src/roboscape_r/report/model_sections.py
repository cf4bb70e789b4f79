"""The report's sections about the learned pieces: the reward validity check (Fig. 3 and its
table, from `roboscape reward-check`) and the world model's quality (from `roboscape eval-wm`)."""

from __future__ import annotations

from typing import Any

from roboscape_r.report.document import Block, Bullets, Heading, Image, Paragraph, table
from roboscape_r.report.run_folder import OURS
from roboscape_r.worldmodel.evaluate_report import CONTEXT_REFERENCE, references_of

REFERENCE_SIM = "sim"
"""The simulator's dense reward: computed from privileged state, a reference rather than a competitor."""


def number(value: Any, digits: int = 2) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def split_keys(splits: dict) -> list[str]:
    """Split names of a reward check or WM evaluation in reading order: in-domain, the OOD factors
    (ood/<factor>, in the scene table's order), ood, all, then any other (the JSON files store
    them key-sorted)."""
    from roboscape_r.data.scenes import SCENES

    names = list(splits)
    known = [f"ood/{spec.factor}" for spec in SCENES.values() if spec.split == "ood"]
    factors = [s for s in dict.fromkeys(known) if s in splits] + sorted(
        s for s in names if s.startswith("ood/") and s not in known)
    head = [s for s in ("in-domain",) if s in splits] + factors + [s for s in ("ood", "all") if s in splits]
    return head + [s for s in names if s not in head]


# ------------------------------------------------------------------------------ reward check


REWARD_COLUMNS = (OURS, "embedding", "proxy", REFERENCE_SIM)
"""Column order of the reward-check table; other reward names follow, sorted."""


def ok_rewards(check: dict) -> list[str]:
    """Rewards the check scored (status ok): ours, the baselines, the sim reference, then others."""
    names = {name for name, entry in check.get("rewards", {}).items()
             if isinstance(entry, dict) and entry.get("status") == "ok"}
    return [n for n in REWARD_COLUMNS if n in names] + sorted(names - set(REWARD_COLUMNS))


def reward_rank(check: dict, split: str, metric: str, reward: str = OURS,
                exclude: tuple[str, ...] = ()) -> tuple[int, int] | None:
    """(rank, number of rewards) of `reward` by `metric` (higher is better) on `split`, among the
    scored rewards with a value there, minus `exclude`; rank 1 is best and ties share the better
    rank. None when `reward` has no value."""
    per_reward = check.get("splits", {}).get(split, {})
    values = {name: per_reward.get(name, {}).get(metric) for name in ok_rewards(check) if name not in exclude}
    values = {name: v for name, v in values.items() if isinstance(v, (int, float))}
    if reward not in values:
        return None
    return 1 + sum(v > values[reward] for v in values.values()), len(values)


def rank_sentence(check: dict, split: str = "ood") -> str:
    """Where the general reward ranks on `split` by both metrics, with and without the sim reference."""
    if split not in check.get("splits", {}):
        return f"The reward check has no '{split}' episodes, so the general reward's {split} rank is not available."
    parts = []
    for metric, label in (("spearman_progress", "progress correlation"), ("auroc_mean_return", "success AUROC")):
        every = reward_rank(check, split, metric)
        learned = reward_rank(check, split, metric, exclude=(REFERENCE_SIM,))
        if every is None:
            parts.append(f"{label}: n/a (no value for the general reward)")
            continue
        text = f"{label}: rank {every[0]} of {every[1]}"
        if learned is not None and learned[1] != every[1]:
            text += f" ({learned[0]} of {learned[1]} without the simulator's privileged '{REFERENCE_SIM}' reward)"
        parts.append(text)
    return f"General reward's OOD rank among the rewards (1 = best): {'; '.join(parts)}."


def reward_check_blocks(check: dict | None, figure_src: str | None) -> list[Block]:
    blocks: list[Block] = [Heading("Fig. 3: do the rewards track real task progress?")]
    if check is None:
        return blocks + [Paragraph("Not available: the run folder has no reward_check/reward_check.json "
                                   "(run `roboscape reward-check --out RUN_DIR/reward_check`).")]
    example = check.get("example") or {}
    if figure_src is not None:
        caption = (f"Fig. 3: every reward, min-max normalised, along one {example.get('kind', '')} held-out episode "
                   f"({example.get('task', '?')}, scene {example.get('scene', '?')}); frames above.")
        blocks.append(Image(figure_src, caption))
    else:
        blocks.append(Paragraph("No reward-check figure (no successful held-out episode to plot)."))
    blocks.append(Paragraph("Per split of the held-out episodes: Spearman correlation of the reward with progress "
                            "t/L along successful episodes (averaged over them) and AUROC of the per-episode mean "
                            "reward for successful vs failed episodes. Cells read 'rho / AUROC'."))
    names = ok_rewards(check)
    rows = []
    splits = check.get("splits", {})
    for split in split_keys(splits):
        per_reward = splits[split]
        first = next((per_reward[n] for n in names if n in per_reward), {})
        rows.append([split, f"{first.get('episodes', '-')} ({first.get('successful', '-')} ok / "
                            f"{first.get('failed', '-')} failed)"]
                    + [f"{number(per_reward.get(n, {}).get('spearman_progress'))} / "
                       f"{number(per_reward.get(n, {}).get('auroc_mean_return'))}" for n in names])
    if names and rows:
        blocks.append(table(["split", "episodes"] + [n + (" (ours)" if n == OURS else "") for n in names], rows,
                            "Reward check: Spearman progress correlation / success-vs-failure AUROC"))
    blocks.append(Paragraph(rank_sentence(check)))
    components = check.get("components") or {}
    terms = list(dict.fromkeys(name for per_term in components.values() for name in per_term))
    if terms:
        rows = [[split] + [f"{number(per_term.get(n, {}).get('spearman_progress'))} / "
                           f"{number(per_term.get(n, {}).get('auroc_mean_return'))}" for n in terms]
                for split, per_term in ((s, components[s]) for s in split_keys(components))]
        blocks.append(table(["split"] + terms, rows, "The general reward's two terms scored on their own "
                                                     "(alignment with the golden frame; weighted done probability): "
                                                     "Spearman progress correlation / success-vs-failure AUROC"))
    skipped = [f"{name}: skipped ({entry.get('reason', 'no reason given')})"
               for name, entry in check.get("rewards", {}).items()
               if isinstance(entry, dict) and entry.get("status") != "ok"]
    notes = [f"note ({key}): {note}" for key, note in check.get("notes", {}).items()]
    general = check.get("rewards", {}).get(OURS, {}).get("describe") or {}
    if general.get("distance"):
        notes.append(f"the general reward used the perceptual distance {general['distance']}")
    if skipped or notes:
        blocks.append(Bullets(tuple(skipped + notes)))
    return blocks


# ------------------------------------------------------------------------------ world model


def wm_quality_blocks(metrics: dict | None) -> list[Block]:
    blocks: list[Block] = [Heading("World-model quality")]
    if metrics is None:
        return blocks + [Paragraph("Not available: the run folder has no wm_eval/metrics.json "
                                   "(run `roboscape eval-wm --out RUN_DIR/wm_eval`).")]
    config = metrics.get("config", {})
    splits = metrics.get("splits", {})
    horizons = [str(h) for h in config.get("horizons", [])] or sorted(
        {h for entry in splits.values() for h in entry.get("open_loop", {})}, key=int)
    blocks.append(Paragraph(
        "Open-loop prediction on held-out episodes from real context frames and the real actions. Each cell reads "
        "'model / model anchored / copy-last / tokenizer recon' PSNR in dB: model anchored adds the tokenizer's "
        "reconstruction error of the last real frame to each predicted frame (so what does not move keeps its real "
        "detail), copy-last repeats the last context frame (the trivial baseline), tokenizer recon encodes and "
        "decodes the true frame (the best the model's tokens can do without an anchor). "
        f"Perceptual distance: {metrics.get('perceptual_distance', 'unknown')}; PSNR capped at "
        f"{metrics.get('psnr_cap_db', '?')} dB."))

    first = next((e["open_loop"][h] for e in splits.values() for h in horizons if e.get("open_loop", {}).get(h)), {})
    references = references_of(first)
    if CONTEXT_REFERENCE in references:
        blocks.append(Paragraph(
            "A fifth number is the model's prediction drawn on the last real frame by the context decoder "
            "(`roboscape train-context-decoder`): the predicted tokens say what changed, the real frame supplies "
            "the detail of what did not."))

    def psnr_triple(entry: dict | None) -> str:
        if not entry:
            return "-"
        return " / ".join(number((entry.get(ref) or {}).get("psnr"), 1) for ref in references)

    def moving_cell(entry: dict | None) -> str:
        moved = (entry or {}).get("moving") or {}
        share = moved.get("pixel_fraction")
        return psnr_triple(moved) + ("" if share is None else f" ({100 * share:.1f}% px)")

    def moved_windows_cell(entry: dict | None) -> str:
        moved = (entry or {}).get("moved_windows")
        return "-" if not moved else f"{psnr_triple(moved)} ({moved.get('windows', '?')} windows)"

    def tokens_cell(entry: dict | None) -> str:
        rates = (entry or {}).get("tokens") or {}
        return f"{number(rates.get('still_kept'), 2)} / {number(rates.get('changed_changed'), 2)}"

    def difference_cell(entry: dict | None) -> str:
        difference = ((entry or {}).get("vs_copy_last") or {}).get("full")
        if not difference:
            return "-"
        low, high = difference["psnr_diff_ci95"]
        return f"{difference['psnr_diff']:+.2f} [{low:+.2f}, {high:+.2f}]"

    full, moving, moved_windows, tokens, differences = [], [], [], [], []
    for split in split_keys(splits):
        entry = splits[split]
        open_loop = entry.get("open_loop", {})
        full.append([split, str(entry.get("windows", "-"))] + [psnr_triple(open_loop.get(h)) for h in horizons])
        moving.append([split] + [moving_cell(open_loop.get(h)) for h in horizons])
        moved_windows.append([split] + [moved_windows_cell(open_loop.get(h)) for h in horizons])
        tokens.append([split] + [tokens_cell(open_loop.get(h)) for h in horizons])
        differences.append([split] + [difference_cell(open_loop.get(h)) for h in horizons])
    blocks.append(table(["split", "windows"] + [f"PSNR @ {h} steps" for h in horizons], full,
                        "Full-frame PSNR (dB): model / model anchored / copy-last / tokenizer recon"))
    if "moved_windows" in first:  # eval-wm runs before it existed lack it
        blocks.append(table(["split"] + [f"moved windows PSNR @ {h}" for h in horizons], moved_windows,
                            "Full-frame PSNR (dB) over only the windows in which some pixel moved (a still window gives "
                            "copy-last the PSNR cap), same columns, and how many windows that is"))
    if "vs_copy_last" in first:  # eval-wm runs before it existed lack it
        compared = "drawn on the last real frame" if first["vs_copy_last"]["model"] == CONTEXT_REFERENCE else "plain"
        blocks.append(table(["split"] + [f"model - copy-last @ {h}" for h in horizons], differences,
                            f"Full-frame PSNR of the model's prediction ({compared}) minus copy-last's, window by window "
                            "(dB), with its 95% bootstrap interval over windows"))
    if "tokens" in first:  # eval-wm runs before it existed lack it
        blocks.append(table(["split"] + [f"tokens @ {h}" for h in horizons], tokens,
                            "WM_act's token grids against the real ones: the share of cells that stay the same in the real "
                            "frames where the prediction keeps the context token too / the share of cells that change "
                            "where the prediction changes them (copy-last: 1 / 0)"))
    blocks.append(table(["split"] + [f"moving-pixel PSNR @ {h}" for h in horizons], moving,
                        "PSNR on the pixels that move (model / model anchored / copy-last / tokenizer recon) and the share of "
                        "moving pixels"))
    rows = []
    for split in split_keys(splits):
        entry = splits[split]
        control = entry.get("controllability") or {}
        ci = control.get("psnr_gap_ci95") or [None, None]
        done = entry.get("done") or {}
        done_ci = done.get("auroc_ci95")
        golden = entry.get("golden") or {}
        true_psnr, shuffled_psnr = control.get("psnr_true_actions"), control.get("psnr_shuffled_actions")
        rows.append([split, f"{number(control.get('psnr_gap'))} [{number(ci[0])}, {number(ci[1])}]",
                     f"{number(true_psnr, 1)} / {number(shuffled_psnr, 1)}",
                     number(done.get("auroc"), 3) + (f" [{number(done_ci[0])}, {number(done_ci[1])}]" if done_ci else ""),
                     number(done.get("f1"), 3),
                     f"{number(golden.get('psnr'), 1)} / {number((golden.get('copy_first') or {}).get('psnr'), 1)}"])
    horizon = next((e.get("controllability", {}).get("horizon") for e in splits.values()
                    if e.get("controllability")), config.get("control_horizon", "?"))
    blocks.append(table(["split", f"action gap @ {horizon} (dB) [95% CI]", "PSNR true / shuffled actions",
                         "done AUROC", "done F1 @0.5", "golden PSNR / copy-first"], rows,
                        "Action controllability (PSNR with the true minus with shuffled actions, bootstrap 95% CI), "
                        "done prediction (AUROC with a 95% interval over resampled episodes, where computed) and WM_txt "
                        "golden trajectories"))
    return blocks
