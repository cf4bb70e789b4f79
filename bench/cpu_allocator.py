"""CPU training step with glibc's default allocator settings vs `roboscape_r.cpu.keep_freed_memory`.

Each setting runs in its own fresh process (allocator settings are per process and the first
allocations decide the heap), one after the other, on the same machine:
  * one AdamW training step of the default small WM_act with the shipped recipe's dropout
    (`--dropout`, 0.1; RANDOMLY INITIALISED: the cost does not depend on the weights) on random
    tokens and actions, batch `--batch-size`, 8-frame clips, `--threads` torch threads; median
    seconds per step after `--warmup` steps;
  * user and system CPU seconds of the timed steps (where the default settings lose their time);
  * peak memory (maxrss) of each process.
Prints the ratio default / kept (how many times faster a step is with the memory kept).

Usage: python bench/cpu_allocator.py [--threads 1] [--batch-size 32] [--steps 6] [--warmup 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def time_steps(batch_size: int, steps: int, warmup: int, threads: int, dropout: float) -> dict:
    """Median step seconds, user/system CPU seconds of the timed steps, maxrss MiB (this process)."""
    import torch

    from roboscape_r.worldmodel.config import WorldModelConfig
    from roboscape_r.worldmodel.world_model import WorldModel

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    config = WorldModelConfig(dropout=dropout)
    model = WorldModel(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, config.codebook_size, (batch_size, 8, config.grid_h, config.grid_w))
    actions = torch.randn(batch_size, 8, config.action_dim)
    targets = torch.randint(0, config.codebook_size, (batch_size, 8, config.grid_h * config.grid_w))

    def step() -> None:
        logits = model(tokens, actions).next_token_logits  # (B, T, h*w, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, config.codebook_size), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    before = os.times()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    after = os.times()
    return {"step_s": statistics.median(seconds), "user_s": after.user - before.user,
            "system_s": after.system - before.system,
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(setting: str, args: argparse.Namespace) -> dict:
    """Time the steps in a fresh process with allocator `setting` ('default' or 'kept')."""
    command = [sys.executable, __file__, "--child", setting, "--threads", str(args.threads),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--dropout", str(args.dropout)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (the heap grows in them)")
    parser.add_argument("--dropout", type=float, default=0.1, help="the shipped WM_act's dropout")
    parser.add_argument("--child", choices=("default", "kept"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from roboscape_r.cpu import keep_freed_memory

        applied = keep_freed_memory() if args.child == "kept" else False
        if args.child == "kept" and not applied:
            raise SystemExit("keep_freed_memory() did not apply (not glibc, or ROBOSCAPE_MALLOC=default)")
        print(json.dumps(time_steps(args.batch_size, args.steps, args.warmup, args.threads, args.dropout)))
        return

    print(f"WM_act training step, batch {args.batch_size}, dropout {args.dropout}, {args.threads} thread(s), "
          f"median of {args.steps} after {args.warmup} warm-up steps, one fresh process per setting")
    results = {setting: run_child(setting, args) for setting in ("default", "kept")}
    for setting, r in results.items():
        print(f"  {setting:8s} {r['step_s']:7.2f} s/step   CPU in timed steps: user {r['user_s']:6.1f} s, "
              f"system {r['system_s']:6.1f} s   maxrss {r['maxrss_mib']:6.0f} MiB")
    ratio = results["default"]["step_s"] / results["kept"]["step_s"]
    print(f"ratio default / kept: {ratio:.2f}x faster with freed memory kept")


if __name__ == "__main__":
    main()
