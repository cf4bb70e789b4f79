"""The `roboscape` command: one subcommand per stage.

Each stage's options come from its config dataclass (tyro turns field docstrings into --help).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from roboscape_r.cpu import keep_freed_memory, use_lavapipe

use_lavapipe()  # CPU rendering

USAGE = """usage: roboscape COMMAND [options]   (roboscape COMMAND --help for options)

commands:
  collect            record episodes in ManiSkill into an HDF5 dataset
  data summary DIR   counts, success rates and a contact sheet of a dataset
  data check DIR     verify checksums and shapes; non-zero exit on any problem
  data scenes        list tasks, in-domain scenes and OOD factors (optionally render them)
  train-tokenizer    train the LFQ image tokenizer on a dataset's frames
  train-wm           train WM_act (--train.kind act) or WM_txt (--train.kind txt) on tokenised episodes
  refit-done         refit WM_act's done head on frozen features (weight decay, early stopping on validation episodes)
  train-spatial-head fit a head that decodes a frame's tokens jointly (coherent WM_txt golden trajectories)
  train-context-decoder  fit a decoder that draws predicted tokens on the real context frame (sharp still background)
  eval-wm            score world models on held-out episodes per split (open loop, controllability, done, golden)
  train-policy       PPO inside the world model (--env wm, reward by name) or in ManiSkill (--env sim)
  train-bc           behaviour cloning from expert episodes (a baseline and a PPO warm start)
  experiment         the paper's comparison for a preset (--preset demo|small|paper), resumable, then the report
  train-proxy-reward train the proxy reward CNN (dense reward + success from a frame) on a dataset
  reward-check       score the rewards along real held-out episodes (progress correlation, success AUROC)
  eval               success rates of a policy in ManiSkill per task, scene, split and OOD factor (+ videos)
  report RUN_DIR     results report of an experiment folder (RUN_DIR/report/index.html, REPORT.md, figures)
"""


@dataclass(frozen=True)
class ScenesConfig:
    """List tasks and scene variants."""

    render: Path | None = None
    """Write a PNG with one frame of every task in every scene to this path."""
    image_size: int = 64
    """Frame size for --render."""
    env_module: str | None = None
    """Python module to import first; it may register extra env ids."""


@dataclass(frozen=True)
class DatasetPathConfig:
    """A dataset folder."""

    root: tyro.conf.Positional[Path]
    """Dataset folder written by `roboscape collect`."""


def _cmd_collect(argv: list[str]) -> int:
    from roboscape_r.data.collect import CollectConfig, collect
    from roboscape_r.data.summary import format_summary, summarize

    config = tyro.cli(CollectConfig, args=argv, prog="roboscape collect")
    manifest = collect(config)
    print(format_summary(summarize(config.out)))
    print(f"\ndataset: {config.out} ({sum(len(s['episodes']) for s in manifest['shards'].values())} episodes)")
    return 0


def _cmd_data(argv: list[str]) -> int:
    if not argv or argv[0] not in ("summary", "check", "scenes"):
        print("usage: roboscape data {summary DIR | check DIR | scenes}", file=sys.stderr)
        return 2
    sub, rest = argv[0], argv[1:]
    if sub == "scenes":
        config = tyro.cli(ScenesConfig, args=rest, prog="roboscape data scenes")
        return _scenes(config)
    config = tyro.cli(DatasetPathConfig, args=rest, prog=f"roboscape data {sub}")
    if sub == "summary":
        from roboscape_r.data.summary import format_summary, write_summary

        summary, sheet = write_summary(config.root)
        print(format_summary(summary))
        print(f"\nwrote {config.root / 'summary.json'} and {sheet}")
        return 0
    from roboscape_r.data.format import check_dataset

    problems = check_dataset(config.root)
    for problem in problems:
        print(f"PROBLEM {problem}")
    print(f"{config.root}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def _scenes(config: ScenesConfig) -> int:
    from roboscape_r.data import scenes as S

    S.import_env_module(config.env_module)
    print(f"action space: {S.CONTROL_MODE} (7-D, shared by every task)\n")
    print(f"{'task':<12}{'ManiSkill id':<16}{'max steps':>10}  instruction example")
    for name, task in S.TASKS.items():
        print(f"{name:<12}{task.maniskill_id:<16}{task.max_episode_steps:>10}  {S.instructions()[name][0]}")
    print(f"\n{'scene':<24}{'split':<11}{'factor':<15}{'severity':>8}  tasks")
    for row in S.describe_scenes():
        print(f"{row['name']:<24}{row['split']:<11}{row['factor']:<15}{row['severity']:>8}  {','.join(row['tasks'])}")
    print(f"\nenv ids: {S.env_id('<Task>', '<scene>')}; add your own with --env-module (see README)")
    if config.render is not None:
        from roboscape_r.data.render import render_scene_grid

        render_scene_grid(config.render, config.image_size)
        print(f"wrote {config.render}")
    return 0


def _cmd_train_tokenizer(argv: list[str]) -> int:
    from roboscape_r.data.dataset import FrameDataset
    from roboscape_r.tokenizer import train_tokenizer
    from roboscape_r.train_args import TrainTokenizerArgs

    args = tyro.cli(TrainTokenizerArgs, args=argv, prog="roboscape train-tokenizer")
    result = train_tokenizer(args.train, FrameDataset(args.data, split="train"), args.out)
    print(f"tokenizer step {result.step} ({'finished' if result.finished else 'stopped early'}): {result.checkpoint_path}")
    return 0


def _cmd_train_wm(argv: list[str]) -> int:
    from roboscape_r.tokenizer import load_tokenizer
    from roboscape_r.train_args import TrainWMArgs
    from roboscape_r.worldmodel.data import tokenized_episodes
    from roboscape_r.worldmodel.train import train_world_model

    args = tyro.cli(TrainWMArgs, args=argv, prog="roboscape train-wm")
    from roboscape_r.checkpoint import latest_checkpoint

    tokenizer_file = latest_checkpoint(args.tokenizer) if args.tokenizer.is_dir() else args.tokenizer
    if tokenizer_file is None:
        raise ValueError(f"no tokenizer checkpoint in {args.tokenizer}; train one with `roboscape train-tokenizer`")
    tokenizer = load_tokenizer(tokenizer_file)
    episodes = [episode for root in (args.data, *args.extra_data)
                for episode in tokenized_episodes(root, tokenizer, tokenizer_file, args.out / "token_cache", split="train",
                                                  hysteresis=args.train.model.token_hysteresis)]
    result = train_world_model(args.train, episodes, tokenizer, args.out)
    print(f"wm_{args.train.kind} step {result.step}: {result.checkpoint}  last losses {result.last_losses}")
    return 0


def _cmd_eval_wm(argv: list[str]) -> int:
    from roboscape_r.worldmodel.evaluate import EvalWMConfig, run_evaluation
    from roboscape_r.worldmodel.evaluate_report import format_metrics

    config = tyro.cli(EvalWMConfig, args=argv, prog="roboscape eval-wm")
    metrics = run_evaluation(config)
    print(format_metrics(metrics))
    print(f"\nwrote {config.out / 'metrics.json'}, {config.out / 'open_loop_grid.png'}, {config.out / 'open_loop.gif'}")
    return 0


def _cmd_train_proxy_reward(argv: list[str]) -> int:
    from roboscape_r.reward.proxy_train import TrainProxyArgs, train_proxy_reward

    args = tyro.cli(TrainProxyArgs, args=argv, prog="roboscape train-proxy-reward")
    result = train_proxy_reward(args.data, args.out, args.train)
    print(f"proxy reward step {result.step} ({'finished' if result.finished else 'stopped early'}): "
          f"{result.checkpoint_path}")
    print("  ".join(f"{k}={v:.4g}" for k, v in result.metrics.items() if isinstance(v, float)))
    return 0


def _cmd_refit_done(argv: list[str]) -> int:
    from roboscape_r.worldmodel.done_refit import RefitDoneConfig, run_refit_done

    config = tyro.cli(RefitDoneConfig, args=argv, prog="roboscape refit-done")
    report = run_refit_done(config)
    chosen, before = report["chosen"], report["before"]
    print(f"done head: validation AUROC {before['val']['auroc']:.3f} -> {chosen['val_auroc']:.3f} "
          f"(weight decay {chosen['weight_decay']:g}, step {chosen['step']}; train AUROC {chosen['train_auroc']:.3f})")
    print(f"wrote {config.out / 'wm_act.pt'} and {config.out / 'refit_done.json'}")
    return 0


def _cmd_train_spatial_head(argv: list[str]) -> int:
    from roboscape_r.worldmodel.spatial_head_train import SpatialHeadTrainConfig, run_train_spatial_head

    config = tyro.cli(SpatialHeadTrainConfig, args=argv, prog="roboscape train-spatial-head")
    report = run_train_spatial_head(config)
    before, after = report["before"]["val"], report["after"]["val"]
    print(f"validation next-token cross-entropy {before['base_ce']:.3f} (backbone alone) -> {after['head_ce']:.3f} "
          f"(with the head, step {report['chosen_step']}); token accuracy {before['base_accuracy']:.3f} -> "
          f"{after['head_accuracy']:.3f}")
    print(f"wrote {config.out / 'spatial_head.pt'} and {config.out / 'spatial_head.json'}")
    return 0


def _cmd_train_context_decoder(argv: list[str]) -> int:
    from roboscape_r.worldmodel.context_decoder_fit import ContextDecoderFitConfig, run_fit_context_decoder

    config = tyro.cli(ContextDecoderFitConfig, args=argv, prog="roboscape train-context-decoder")
    report = run_fit_context_decoder(config)
    scores = report["val_psnr_db"]
    for name in ("chosen", "plain_decoder", "copy_last"):
        print(f"{name:>14}: " + "  ".join(f"{h} {db:.2f} dB" for h, db in scores[name].items()))
    print(f"(validation open-loop windows, WM_act's predictions; chosen step {report['chosen_step']}, "
          f"dead zone {report['dead_zone']['chosen']:g} levels)")
    print(f"wrote {config.out / 'context_decoder.pt'} and {config.out / 'context_decoder.json'}")
    return 0


def _cmd_reward_check(argv: list[str]) -> int:
    from roboscape_r.reward.check import RewardCheckConfig, run_reward_check
    from roboscape_r.reward.check_report import format_reward_check

    config = tyro.cli(RewardCheckConfig, args=argv, prog="roboscape reward-check")
    result = run_reward_check(config)
    print(format_reward_check(result))
    print(f"\nwrote {config.out / 'reward_check.json'}" + (f", {config.out / 'reward_check.png'}" if result["example"] else ""))
    return 0


def _cmd_eval(argv: list[str]) -> int:
    from roboscape_r.eval.evaluate import RESULTS_NAME, EvalConfig, evaluate
    from roboscape_r.eval.metrics import format_table

    config = tyro.cli(EvalConfig, args=argv, prog="roboscape eval")
    results = evaluate(config)
    print(format_table(results, "task_split") + "\n\n" + format_table(results, "factor"))
    print(f"\nwrote {config.out / RESULTS_NAME} and {len(results['videos'])} video(s) in {config.out / 'videos'}")
    return 0


def _cmd_train_policy(argv: list[str]) -> int:
    from roboscape_r.policy.train_args import TrainPolicyArgs, run_train_policy

    args = tyro.cli(TrainPolicyArgs, args=argv, prog="roboscape train-policy")
    result = run_train_policy(args)
    state = "finished" if result.finished else "stopped early"
    print(f"policy ({args.env}) update {result.update}, {result.global_step} env steps ({state}): {result.checkpoint_path}")
    return 0


def _cmd_train_bc(argv: list[str]) -> int:
    from roboscape_r.policy.bc import train_bc
    from roboscape_r.policy.train_args import TrainBCArgs

    args = tyro.cli(TrainBCArgs, args=argv, prog="roboscape train-bc")
    result = train_bc(args.data, args.out, args.train)
    print(f"bc step {result.step} ({'finished' if result.finished else 'stopped early'}): {result.checkpoint_path}")
    return 0


def _cmd_experiment(argv: list[str]) -> int:
    from roboscape_r.experiment import ExperimentArgs, run_experiment

    args = tyro.cli(ExperimentArgs, args=argv, prog="roboscape experiment")
    out = run_experiment(args)
    print(f"experiment folder: {out}")
    return 0


def _cmd_report(argv: list[str]) -> int:
    from roboscape_r.report import ReportConfig, build_report

    config = tyro.cli(ReportConfig, args=argv, prog="roboscape report")
    result = build_report(config)
    print(f"wrote {result.html}, {result.markdown} and {len(result.figures)} figure(s)")
    if result.missing:
        print(f"{len(result.missing)} missing piece(s), listed in the report:")
        for line in result.missing:
            print(f"  {line}")
    return 0


COMMANDS = {"collect": _cmd_collect, "data": _cmd_data, "train-tokenizer": _cmd_train_tokenizer,
            "train-wm": _cmd_train_wm, "refit-done": _cmd_refit_done,
            "train-spatial-head": _cmd_train_spatial_head,
            "train-context-decoder": _cmd_train_context_decoder, "eval-wm": _cmd_eval_wm,
            "train-policy": _cmd_train_policy, "experiment": _cmd_experiment, "train-bc": _cmd_train_bc, "train-proxy-reward": _cmd_train_proxy_reward,
            "reward-check": _cmd_reward_check, "eval": _cmd_eval, "report": _cmd_report}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0 if argv else 2)
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"roboscape: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    keep_freed_memory()  # a CPU training step ran 3x faster (roboscape_r.cpu, bench/cpu_allocator.py)
    try:
        sys.exit(command(argv[1:]))
    except ValueError as err:  # bad input: one clear line, no traceback
        print(f"roboscape {argv[0]}: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
