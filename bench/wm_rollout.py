"""World-model env throughput vs a ManiSkill RGB env, side by side in one run.

Prints, for 64x64 frames:
  * world-model env steps/s at batch 1, 16, 64: one full `WorldModelRollout.step` (transformer
    with KV cache and window slides + greedy token choice + tokenizer decode to uint8 frames),
    default small WorldModelConfig and the real Tokenizer architecture, RANDOMLY INITIALISED
    (speed does not depend on the weights; greedy decoding of random weights costs the same);
  * ManiSkill RGB env steps/s (one env, random actions, rendering every step) and the ratio;
  * FLOPs of one step (torch.utils.flop_counter, matmuls and convs), the achieved FLOP/s, and a
    fp32 square-matmul peak (1024 and 2048, best of several) measured in the same run;
  * tokenizer encode/decode frames/s, peak memory (maxrss), and a torch.profiler top-10 of one
    batch-64 step.
Targets: at batch 64, >= 10x ManiSkill's single-env steps/s and >= 30% of the matmul peak.

Usage: python bench/wm_rollout.py [--threads 1] [--maniskill-steps 100] [--device cuda --batches 1,16,64,256]
On a GPU (`--device cuda`) the matmul peak and every timing are measured on that device; with
`--maniskill-steps 0` (a machine without ManiSkill) the ManiSkill columns are left out.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from roboscape_r.cpu import MALLOC_ENV, keep_freed_memory, use_lavapipe  # noqa: E402

use_lavapipe()
KEPT_FREED_MEMORY = keep_freed_memory()  # as every `roboscape` command does (ROBOSCAPE_MALLOC=default: off)

BATCHES = (1, 16, 64)
WINDOW_CYCLE = 5
"""Steps in one period of the rollout's sliding window at the default config (context 8, keep 4):
one re-encoding step then four cached steps. Timed spans are whole periods."""


def synchronize(device) -> None:
    """Wait for queued GPU work, so wall-clock timings cover it (no-op on a CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak_flops(sizes=(1024, 2048), repeats: int = 10, device="cpu") -> float:
    """Best fp32 FLOP/s of torch.mm on square matrices (on a GPU, 4096 too: small ones do not fill it)."""
    import torch

    if torch.device(device).type == "cuda":
        sizes = (*sizes, 4096)
    best = 0.0
    for n in sizes:
        a, b, c = (torch.randn(n, n, device=device), torch.randn(n, n, device=device),
                   torch.empty(n, n, device=device))
        torch.mm(a, b, out=c)
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            torch.mm(a, b, out=c)
            synchronize(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def make_rollout(model, tokenizer, batch: int, temperature: float = 0.0):
    """A rollout reset on random frames and stepped through one full window (cache full)."""
    import torch

    from roboscape_r.worldmodel import WorldModelRollout

    rollout = WorldModelRollout(model, tokenizer, temperature=temperature, seed=0)
    generator = torch.Generator().manual_seed(batch)
    rollout.reset(torch.randint(0, 256, (batch, 64, 64, 3), dtype=torch.uint8, generator=generator))
    actions = torch.rand(batch, 7, generator=generator) * 2 - 1
    for _ in range(model.config.context_frames):
        rollout.step(actions)
    return rollout, actions


def seconds_per_step(rollout, actions, steps: int) -> float:
    synchronize(rollout.device)
    start = time.perf_counter()
    for _ in range(steps):
        rollout.step(actions)
    synchronize(rollout.device)
    return (time.perf_counter() - start) / steps


def maniskill_steps_per_s(task: str, scene: str, steps: int) -> float:
    from roboscape_r.data import scenes as S
    from roboscape_r.data.collect import make_env

    S.register_all()
    env = make_env(S.env_id(task, scene), 64, S.CONTROL_MODE)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps + 5, 7)).astype(np.float32)
    for action in actions[:5]:
        env.step(action)
    start = time.perf_counter()
    for action in actions[5:]:
        _, _, terminated, truncated, _ = env.step(action)
        if bool(terminated[0]) or bool(truncated[0]):
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return steps / seconds


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for every measurement")
    parser.add_argument("--cycles", type=int, default=2, help="window periods (of 5 steps) timed per batch size")
    parser.add_argument("--maniskill-steps", type=int, default=100)
    parser.add_argument("--task", default="PickCube")
    parser.add_argument("--scene", default="id-default-wood")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to time the world model on a GPU")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)),
                        help="comma-separated batch sizes (64 is always included: the targets are at 64)")
    args = parser.parse_args()
    batches = sorted({int(b) for b in args.batches.split(",") if b.strip()} | {64})

    import torch
    from torch.profiler import ProfilerActivity, profile, record_function
    from torch.utils.flop_counter import FlopCounterMode

    from roboscape_r.tokenizer import Tokenizer, TokenizerConfig
    from roboscape_r.tokenizer.context_decoder import ContextDecoder
    from roboscape_r.worldmodel import WorldModel, WorldModelConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    tokenizer = Tokenizer(TokenizerConfig()).eval().to(device)
    model = WorldModel(WorldModelConfig()).eval().to(device)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  CPU: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), load average at start {os.getloadavg()[0]:.1f}, freed memory "
          f"{'kept (as the CLI does)' if KEPT_FREED_MEMORY else f'handed back ({MALLOC_ENV}=default or not glibc)'}")
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)} (fp32, TF32 matmuls "
              f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'})")
    print(f"world model: default WorldModelConfig ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params), "
          f"tokenizer: default TokenizerConfig ({sum(p.numel() for p in tokenizer.parameters()) / 1e6:.2f}M params); "
          "random init, greedy decoding")

    peak = matmul_peak_flops(device=device)
    print(f"fp32 matmul peak (square, best of 10) on {device.type}: {peak / 1e9:8.1f} GFLOP/s")

    wm_steps_per_s, step_seconds = {}, {}
    for batch in batches:
        rollout, actions = make_rollout(model, tokenizer, batch)
        cycles = args.cycles * (4 if batch == 1 else 1)
        step_seconds[batch] = seconds_per_step(rollout, actions, cycles * WINDOW_CYCLE)
        wm_steps_per_s[batch] = batch / step_seconds[batch]

    # FLOPs of one step at batch 64, averaged over one window period, split transformer / decode.
    rollout, actions = make_rollout(model, tokenizer, 64)
    with torch.inference_mode(), FlopCounterMode(display=False) as transformer_counter:
        tokens = [rollout.step_tokens(actions).tokens for _ in range(WINDOW_CYCLE)]
    with torch.inference_mode(), FlopCounterMode(display=False) as decode_counter:
        tokenizer.decode(tokens[-1])
    transformer_flops = transformer_counter.get_total_flops() / WINDOW_CYCLE
    decode_flops = decode_counter.get_total_flops()
    step_flops = transformer_flops + decode_flops
    achieved = step_flops / step_seconds[64]

    frames = torch.randint(0, 256, (64, 64, 64, 3), dtype=torch.uint8, device=device)
    with torch.inference_mode():
        tokenizer.encode(frames)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(3):
            codes = tokenizer.encode(frames)
        synchronize(device)
        encode_fps = 3 * 64 / (time.perf_counter() - start)
        tokenizer.decode(codes)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(3):
            tokenizer.decode(codes)
        synchronize(device)
        decode_fps = 3 * 64 / (time.perf_counter() - start)
        # The optional context decoder (eval-wm --context-decoder) draws the same tokens on a real frame.
        context_decoder = ContextDecoder(tokenizer.config).eval().to(device)
        context_decoder.decode(tokenizer, codes, codes, frames)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(3):
            context_decoder.decode(tokenizer, codes, codes, frames)
        synchronize(device)
        context_decode_fps = 3 * 64 / (time.perf_counter() - start)

    rollout, actions = make_rollout(model, tokenizer, 64)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode(), profile(activities=activities) as profiler:
        for _ in range(WINDOW_CYCLE):
            with record_function("rollout.step_tokens (transformer + token choice)"):
                step_tokens = rollout.step_tokens(actions).tokens
            with record_function("tokenizer.decode"):
                tokenizer.decode(step_tokens)
    wm_rss = maxrss_mib()

    sim = maniskill_steps_per_s(args.task, args.scene, args.maniskill_steps) if args.maniskill_steps > 0 else None

    print(f"\n{'batch':>5} {'ms/step':>9} {'WM env steps/s':>15}" + (f" {'ManiSkill steps/s':>18} {'ratio':>7}" if sim else ""))
    for batch in batches:
        row = f"{batch:>5} {step_seconds[batch] * 1e3:>9.1f} {wm_steps_per_s[batch]:>15.1f}"
        print(row + (f" {sim:>18.1f} {wm_steps_per_s[batch] / sim:>7.2f}" if sim else ""))
    if sim:
        print(f"(ManiSkill: {args.task} {args.scene}, 1 env, 64x64 RGB, {args.maniskill_steps} random-action steps)")
    else:
        print("(ManiSkill not measured: --maniskill-steps 0)")
    print(f"\nFLOPs per batch-64 step: {step_flops / 1e9:.2f} G (transformer + head {transformer_flops / 1e9:.2f} G, "
          f"tokenizer decode {decode_flops / 1e9:.2f} G)")
    print(f"achieved at batch 64: {achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.1f}% of the measured matmul peak")
    floor_seconds = step_flops / peak
    print(f"at 100% of that peak a batch-64 step would take {floor_seconds * 1e3:.1f} ms: {64 / floor_seconds:.0f} env "
          f"steps/s" + (f" = {64 / floor_seconds / sim:.1f}x ManiSkill" if sim else ""))
    print(f"tokenizer at batch 64: encode {encode_fps:.0f} frames/s, decode {decode_fps:.0f} frames/s; context decoder "
          f"(default ContextDecoderConfig) {context_decode_fps:.0f} frames/s = {context_decode_fps / decode_fps:.2f}x decode")
    print(f"peak memory (maxrss): {wm_rss:.0f} MiB after the world-model runs, {maxrss_mib():.0f} MiB with ManiSkill")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")

    if sim:
        ratio_64 = wm_steps_per_s[64] / sim
        print(f"\ntarget batch-64 WM env steps/s >= 10x ManiSkill: {ratio_64:.2f}x -> {'MET' if ratio_64 >= 10 else 'NOT MET'}")
    print(f"target >= 30% of matmul peak: {100 * achieved / peak:.1f}% -> {'MET' if achieved >= 0.3 * peak else 'NOT MET'}")

    print(f"\ntorch.profiler, batch 64, {WINDOW_CYCLE} steps (one window period), top 10 by self {device.type} time:")
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(profiler.key_averages().table(sort_by=sort_by, row_limit=10, max_name_column_width=40))
    # On a GPU the ranges' host time is only the kernel launches: split by device time there.
    time_of = (lambda e: e.device_time_total) if device.type == "cuda" else (lambda e: e.cpu_time_total)
    ranges = {e.key: time_of(e) for e in profiler.key_averages() if e.key.startswith(("rollout.", "tokenizer."))}
    total = sum(ranges.values()) or 1.0
    for key, microseconds in ranges.items():
        print(f"  {key:<50} {microseconds / 1e3 / WINDOW_CYCLE:8.1f} ms/step  {100 * microseconds / total:5.1f}%")


if __name__ == "__main__":
    main()
