"""Process settings of CPU render workers."""

from __future__ import annotations

import os

import pytest
import torch

from roboscape_r.cpu import LAVAPIPE_ICD, init_render_worker, use_lavapipe


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_render_worker_renders_in_calling_thread_on_one_torch_thread(monkeypatch, restore_threads):
    monkeypatch.delenv("LP_NUM_THREADS", raising=False)
    monkeypatch.delenv("VK_ICD_FILENAMES", raising=False)
    init_render_worker()
    assert os.environ["LP_NUM_THREADS"] == "0"
    assert os.environ["VK_ICD_FILENAMES"] == LAVAPIPE_ICD
    assert torch.get_num_threads() == 1


def test_render_worker_keeps_the_users_settings(monkeypatch, restore_threads):
    monkeypatch.setenv("LP_NUM_THREADS", "3")
    monkeypatch.setenv("VK_ICD_FILENAMES", "/elsewhere/icd.json")
    init_render_worker()
    use_lavapipe()
    assert os.environ["LP_NUM_THREADS"] == "3"
    assert os.environ["VK_ICD_FILENAMES"] == "/elsewhere/icd.json"


FREE_AND_MEASURE = """
import json, os
import torch
from roboscape_r.cpu import keep_freed_memory
applied = keep_freed_memory()
page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20
def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page_mib
block = torch.ones(64 * 2**20 // 4)  # 64 MiB, above glibc's largest mmap threshold
held = rss_mib()
del block
print(json.dumps({"applied": applied, "returned_mib": held - rss_mib()}))
"""


def _free_a_block(env_setting: str | None) -> dict:
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ROBOSCAPE_MALLOC"}
    if env_setting is not None:
        env["ROBOSCAPE_MALLOC"] = env_setting
    done = subprocess.run([sys.executable, "-c", FREE_AND_MEASURE], env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_keep_freed_memory_keeps_a_freed_block_in_the_process():
    kept = _free_a_block(None)
    default = _free_a_block("default")
    assert kept["applied"] and not default["applied"]
    assert default["returned_mib"] > 48, default  # glibc hands the block back at once
    assert kept["returned_mib"] < 16, kept  # kept: the next step reuses it without page faults
