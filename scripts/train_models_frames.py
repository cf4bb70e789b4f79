"""Train tokenizer, WM_act and WM_txt in one go from dataset episodes held in memory.

For short runs on a lent GPU, where neither the package's CLI dependencies nor ManiSkill are
installed: ``PYTHONPATH=src python scripts/train_models_frames.py DATA OUT --embeddings E.json``,
where DATA is a folder of dataset shards or a pack written by ``scripts/pack_frames.py``.
The last shard (or the last --heldout-episodes of a pack) is held out; the script prints
held-out tokenizer PSNR and world-model token accuracy. Each stage stops at its time limit; weights-only copies of the three checkpoints are
written to OUT/export as soon as each stage ends, so a run cut short still returns what it made.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from roboscape_r.checkpoint import export_weights
from roboscape_r.tokenizer import TokenizerTrainConfig, load_tokenizer, train_tokenizer
from roboscape_r.tokenizer.config import TokenizerConfig
from roboscape_r.worldmodel.frame_metrics import auroc
from roboscape_r.worldmodel.config import WMTrainConfig, WorldModelConfig
from roboscape_r.worldmodel.data import encode_episode
from roboscape_r.worldmodel.text_encoder import PrecomputedTextEncoder
from roboscape_r.worldmodel.train import load_world_model, train_world_model


def load_episodes(paths: list[Path]) -> list[dict]:
    episodes = []
    for path in paths:
        with h5py.File(path, "r") as f:
            for name in f:
                group = f[name]
                episodes.append({"frames": torch.from_numpy(group["obs/rgb"][()]),
                                 "actions": group["actions"][()], "success": group["success"][()],
                                 "instruction": str(group.attrs["instruction"])})
    return episodes


def load_pack(path: Path) -> tuple[list[dict], str | None]:
    """Episodes of a pack written by scripts/pack_frames.py, and the digest of the tokenizer of a
    token pack (None for a frame pack). In a token pack each episode has "tokens" and only the
    last episodes have "frames" (None elsewhere)."""
    pack = np.load(path)
    offsets = pack["frame_offsets"]
    actions, success = pack["actions"], pack["success"]
    tokens = torch.from_numpy(pack["tokens"].astype(np.int64)) if "tokens" in pack else None
    frames = torch.from_numpy(pack["frames"])
    first_framed = int(pack["frames_from_episode"]) if tokens is not None else 0
    frame_base = int(offsets[first_framed])
    episodes = []
    for i, instruction in enumerate(pack["instructions"]):
        start, end = int(offsets[i]), int(offsets[i + 1])
        steps = slice(start - i, end - i - 1)  # actions/success have one entry fewer than frames per episode
        episode = {"frames": frames[start - frame_base : end - frame_base] if i >= first_framed else None,
                   "actions": actions[steps], "success": success[steps], "instruction": str(instruction)}
        if tokens is not None:
            episode["tokens"] = tokens[start:end]
            episode["token_hysteresis"] = float(pack["token_hysteresis"]) if "token_hysteresis" in pack else 0.0  # older packs
        episodes.append(episode)
    return episodes, (str(pack["tokenizer_digest"]) if tokens is not None else None)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.float() - b.float()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return float((10 * torch.log10(255.0**2 / mse)).mean())


def tokenize(episodes: list[dict], tokenizer, device, hysteresis: float = 0.0) -> list[dict]:
    """Episode dicts as world-model clips: tokens (L, h, w) of frames 0..L-1 with actions 0..L-1."""
    clips = []
    with torch.no_grad():
        for ep in episodes:
            if "tokens" in ep:  # a token pack: encoded by the same tokenizer (digest checked)
                if ep["token_hysteresis"] != hysteresis:
                    raise SystemExit(f"the pack's tokens were made with hysteresis {ep['token_hysteresis']:g}, not "
                                     f"--token-hysteresis {hysteresis:g}: pass that value or pack again "
                                     "(scripts/pack_frames.py --token-hysteresis)")
                tokens = ep["tokens"]
            else:
                tokens = encode_episode(tokenizer, ep["frames"].to(device), hysteresis, 512).cpu()
            clips.append({"tokens": tokens[:-1], "all_tokens": tokens, "actions": ep["actions"],
                          "success": ep["success"], "instruction": ep["instruction"]})
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("shards", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--embeddings", type=Path, required=True, help="JSON {instruction: [384 floats]}")
    parser.add_argument("--tokenizer-steps", type=int, default=3000)
    parser.add_argument("--tokenizer-seconds", type=float, default=120)
    parser.add_argument("--wm-steps", type=int, default=3000)
    parser.add_argument("--wm-seconds", type=float, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--heldout-episodes", type=int, default=16, help="held out from the end of a pack")
    parser.add_argument("--wm-txt-seconds", type=float, default=None, help="default: --wm-seconds")
    parser.add_argument("--wm-txt-steps", type=int, default=None, help="default: --wm-steps")
    parser.add_argument("--select-every", type=int, default=500,
                        help="world-model checkpoint interval; the best on held-out episodes is exported")
    parser.add_argument("--dropout", type=float, default=0.0, help="world-model dropout")
    parser.add_argument("--token-hysteresis", type=float, default=0.0,
                        help="tokenise episodes with this LFQ hysteresis (WorldModelConfig.token_hysteresis)")
    parser.add_argument("--wm-txt-spatial-head-layers", type=int, default=0,
                        help="train WM_txt with a spatial head of this many blocks (joint decoding of a frame's tokens)")
    parser.add_argument("--tokenizer-channels", type=int, default=128)
    parser.add_argument("--tokenizer-init", type=Path, default=None,
                        help="use this trained tokenizer checkpoint instead of training one")
    parser.add_argument("--kinds", default="act,txt", help="world models to train, comma-separated (act, txt)")
    parser.add_argument("--train-episodes", type=int, default=None,
                        help="train on a seeded random subset of this many training episodes (data scaling)")
    parser.add_argument("--golden-frames", type=int, default=40,
                        help="frames of WM_txt golden trajectories scored against the held-out successful episodes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()
    export = args.out / "export"
    export.mkdir(parents=True, exist_ok=True)
    pack_digest = None
    if args.shards.suffix == ".npz":
        episodes, pack_digest = load_pack(args.shards)
        if len(episodes) <= args.heldout_episodes:
            raise SystemExit(f"{args.shards} has {len(episodes)} episodes, need more than --heldout-episodes")
        train_eps, val_eps = episodes[: -args.heldout_episodes], episodes[-args.heldout_episodes :]
    else:
        paths = sorted(args.shards.glob("shard_*.h5"))
        if len(paths) < 2:
            raise SystemExit(f"need at least 2 shards in {args.shards} (one is held out), found {len(paths)}")
        train_eps, val_eps = load_episodes(paths[:-1]), load_episodes(paths[-1:])
    if args.train_episodes is not None:
        if not 1 <= args.train_episodes <= len(train_eps):
            raise SystemExit(f"--train-episodes must be in [1, {len(train_eps)}], got {args.train_episodes}")
        keep = np.sort(np.random.default_rng(0).choice(len(train_eps), args.train_episodes, replace=False))
        train_eps = [train_eps[i] for i in keep]
    if pack_digest is not None and args.tokenizer_init is None:
        raise SystemExit(f"{args.shards} holds tokens: pass the tokenizer that made them with --tokenizer-init")
    if any(e["frames"] is None for e in val_eps):
        raise SystemExit(f"{args.shards} keeps frames for fewer than --heldout-episodes={args.heldout_episodes} "
                         "episodes; pack it again with a larger --keep-frames")
    train_frames = torch.cat([e["frames"] for e in train_eps]) if pack_digest is None else None
    val_frames = torch.cat([e["frames"] for e in val_eps])
    report: dict = {"train_episodes": len(train_eps), "train_frames": sum(len(e["actions"]) + 1 for e in train_eps),
                    "heldout_frames": len(val_frames),
                    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    print(json.dumps(report), flush=True)

    started = time.time()
    tok_config = TokenizerTrainConfig(model=TokenizerConfig(channels=args.tokenizer_channels,
                                                            max_channels=args.tokenizer_channels),
                                      steps=args.tokenizer_steps, batch_size=args.batch_size, device=args.device,
                                      time_limit_s=args.tokenizer_seconds, ckpt_every=500, log_every=50)
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    if args.tokenizer_init is None:
        result = train_tokenizer(tok_config, train_frames, args.out / "tokenizer")
        export_weights(result.checkpoint_path, export / "tokenizer.pt", expected_kind="tokenizer")
        tokenizer_path, tokenizer_step, finished = result.checkpoint_path, result.step, result.finished
    else:
        tokenizer_path, tokenizer_step, finished = args.tokenizer_init, None, None
    tokenizer = load_tokenizer(tokenizer_path, map_location=device).eval()
    if pack_digest is not None:
        from roboscape_r.checkpoint import weights_digest

        if weights_digest(tokenizer) != pack_digest:
            raise SystemExit(f"{args.shards} was tokenised by another tokenizer than {tokenizer_path}")
    with torch.no_grad():
        recon = torch.cat([tokenizer.decode(tokenizer.encode(c.to(device))).cpu() for c in val_frames.split(512)])
    report["tokenizer"] = {"path": str(tokenizer_path), "step": tokenizer_step, "finished": finished, "seconds": time.time() - started,
                           "heldout_psnr_db": psnr(recon, val_frames),
                           "heldout_copy_last_frame_psnr_db": psnr(val_frames[1:], val_frames[:-1])}
    print(json.dumps(report["tokenizer"]), flush=True)

    train_clips = tokenize(train_eps, tokenizer, device, args.token_hysteresis)
    val_clips = tokenize(val_eps, tokenizer, device, args.token_hysteresis)
    text_encoder = PrecomputedTextEncoder(json.loads(args.embeddings.read_text()))
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not kinds or set(kinds) - {"act", "txt"}:
        raise SystemExit(f"--kinds must name act and/or txt, got {args.kinds!r}")
    for kind in kinds:
        started = time.time()
        steps = args.wm_txt_steps if kind == "txt" and args.wm_txt_steps else args.wm_steps
        seconds = args.wm_txt_seconds if kind == "txt" and args.wm_txt_seconds else args.wm_seconds
        head_layers = args.wm_txt_spatial_head_layers if kind == "txt" else 0
        model_config = WorldModelConfig(cond=kind, dropout=args.dropout, spatial_head_layers=head_layers,
                                        token_hysteresis=args.token_hysteresis)
        wm_config = WMTrainConfig(kind=kind, model=model_config, steps=steps,
                                  batch_size=args.batch_size, device=args.device, bf16=args.bf16,
                                  time_limit_s=seconds, ckpt_every=args.select_every, keep_last=1000, log_every=50)
        result = train_world_model(wm_config, train_clips, None, args.out / f"wm_{kind}", text_encoder=text_encoder)
        # Model selection on the held-out episodes (not the eval-wm data): the checkpoint with the
        # lowest held-out next-token cross-entropy, since longer training was seen to overfit
        # (token accuracy was not used: it rewards copying the last frame).
        curve = {}
        for ckpt in sorted((args.out / f"wm_{kind}" / "checkpoints").glob("ckpt_*.pt")):
            curve[ckpt] = heldout_accuracy(ckpt, kind, val_clips, text_encoder, device)
        best = min(curve, key=lambda c: curve[c]["token_cross_entropy"]) if curve else result.checkpoint
        export_weights(best, export / f"wm_{kind}.pt", expected_kind=f"wm_{kind}")
        report[f"wm_{kind}"] = {"step": result.step, "seconds": time.time() - started,
                                "last_losses": {k: float(v) for k, v in dict(result.last_losses).items()}
                                if result.last_losses else None,
                                "selected": best.name, "heldout_curve": {c.name: v for c, v in curve.items()},
                                "heldout": heldout_accuracy(best, kind, val_clips, text_encoder, device)}
        if kind == "txt":
            report["golden"] = golden_motion(best, tokenizer, val_eps, text_encoder, args.golden_frames)
            print(json.dumps({"golden": report["golden"]}), flush=True)
        print(json.dumps(report[f"wm_{kind}"]), flush=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    (export / "report.json").write_text(json.dumps(report, indent=2))


def golden_motion(ckpt: Path, tokenizer, episodes: list[dict], text_encoder, num_frames: int) -> dict:
    """How WM_txt's golden trajectories from the held-out successful episodes' first frames compare
    with those episodes, greedy and sampled (temperature 1).

    motion: mean absolute pixel change from the first frame (0-255), averaged over the steps (for
    golden frames, from the tokenizer's reconstruction of the first frame); the golden trajectory
    should move about as much as the real one. psnr_db: golden frame k against
    the real frame k; copy_first_psnr_db: the first frame against the real frame k (doing nothing);
    decoded_first_psnr_db: the same with the first frame's tokenizer reconstruction (the fair
    reference for decoded golden frames).
    """
    from roboscape_r.worldmodel.rollout import WorldModelRollout

    device = next(tokenizer.parameters()).device
    model = load_world_model(ckpt, kind="wm_txt", map_location=device).eval()
    chosen = [e for e in episodes if bool(np.asarray(e["success"]).any()) and len(e["frames"]) > num_frames]
    if not chosen:
        return {"episodes": 0}
    first = torch.stack([e["frames"][0] for e in chosen]).to(device)
    with torch.no_grad():  # golden frames are decoded tokens: measure their motion from the decoded first frame
        first_decoded = tokenizer.decode(tokenizer.encode(first)).cpu()[:, None].float()
    real = torch.stack([e["frames"][1 : num_frames + 1] for e in chosen]).float()  # (B, T, H, W, 3)
    embeddings = text_encoder.encode([e["instruction"] for e in chosen]).to(device)
    result = {"episodes": len(chosen), "frames": num_frames,
              "real_motion": float((real - first.cpu()[:, None].float()).abs().mean()),
              "copy_first_psnr_db": psnr(first.cpu()[:, None].expand_as(real).flatten(0, 1), real.flatten(0, 1)),
              "decoded_first_psnr_db": psnr(first_decoded.expand_as(real).flatten(0, 1), real.flatten(0, 1))}
    for name, temperature in (("greedy", 0.0), ("sampled_t1", 1.0)):
        rollout = WorldModelRollout(model, tokenizer, temperature=temperature, seed=0)
        golden = rollout.generate_golden(first, embeddings, num_frames, seed=0).frames_uint8.cpu().float()
        result[name] = {"motion": float((golden - first_decoded).abs().mean()),
                        "psnr_db": psnr(golden.flatten(0, 1), real.flatten(0, 1))}
    return result


def heldout_accuracy(ckpt: Path, kind: str, clips: list[dict], text_encoder, device) -> dict:
    """Teacher-forced next-frame token accuracy and done AUROC over every window of the held-out
    episodes, beside the accuracy of copying the last frame's tokens."""
    model = load_world_model(ckpt, kind=f"wm_{kind}", map_location=device).eval()
    context = model.config.context_frames
    hits = copies = total = 0
    ce_sum = 0.0
    done_scores, done_labels = [], []
    windows = [(clip, start) for clip in clips for start in range(0, len(clip["all_tokens"]) - 1, context)]
    with torch.no_grad():
        for clip, start in windows:  # every window of every held-out episode
            tokens = clip["all_tokens"][start : start + context + 1].to(device)[None]  # (1, T+1, h, w)
            T = tokens.shape[1] - 1
            kwargs = {}
            if kind == "act":
                kwargs["actions"] = torch.as_tensor(clip["actions"][start : start + T], dtype=torch.float32,
                                                    device=device)[None]
            else:
                kwargs["instruction_embeddings"] = text_encoder.encode([clip["instruction"]]).to(device)
            out = model(tokens[:, :T], **kwargs)
            pred = out.next_token_logits.argmax(-1)  # (1, T, h*w)
            target = tokens[:, 1:].flatten(2)
            ce_sum += float(torch.nn.functional.cross_entropy(out.next_token_logits.float().flatten(0, 2),
                                                              target.flatten(), reduction="sum"))
            done_scores.append(out.done_logits[0].float().cpu().numpy())
            done_labels.append(np.asarray(clip["success"][start : start + T], dtype=bool))
            hits += int((pred == target).sum())
            copies += int((tokens[:, :T].flatten(2) == target).sum())
            total += target.numel()
    done_auroc = auroc(np.concatenate(done_scores), np.concatenate(done_labels)) if done_scores else None
    return {"token_cross_entropy": ce_sum / max(total, 1), "token_accuracy": hits / max(total, 1),
            "copy_last_token_accuracy": copies / max(total, 1), "done_auroc": done_auroc}


if __name__ == "__main__":
    main()
