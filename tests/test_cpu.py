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
