import json
import os
import subprocess
import sys

import pytest
import torch

from roboscape_r.worldmodel.text_encoder import T5TextEncoder, TextEncoder, TextEncoderUnavailableError


class CountingEncoder(TextEncoder):
    """Embeds a string as (length, number of vowels); counts the strings it really encodes."""

    dim = 2

    def __init__(self, cache_size=4096):
        super().__init__(cache_size)
        self.encoded = []

    def _encode_uncached(self, instructions):
        self.encoded.extend(instructions)
        return torch.tensor([[len(t), sum(c in "aeiou" for c in t)] for t in instructions], dtype=torch.float32)


def test_cache_encodes_each_string_once_and_keeps_order():
    encoder = CountingEncoder()
    out = encoder.encode(["pick", "push the cube", "pick"])
    assert out.tolist() == [[4, 1], [13, 4], [4, 1]]
    encoder.encode(["push the cube", "pick"])
    assert encoder.encoded == ["pick", "push the cube"]


def test_cache_is_least_recently_used():
    encoder = CountingEncoder(cache_size=2)
    encoder.encode(["a1", "b1"])
    encoder.encode(["a1"])  # a1 is now the most recent
    encoder.encode(["c1"])  # evicts b1
    encoder.encode(["a1", "b1"])
    assert encoder.encoded == ["a1", "b1", "c1", "b1"]


@pytest.mark.parametrize("bad", [[""], ["   "], ["ok", "\n\t"]])
def test_empty_instruction_raises(bad):
    with pytest.raises(ValueError, match="empty or whitespace"):
        CountingEncoder().encode(bad)


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match="list of str"):
        CountingEncoder().encode("pick the cube")
    with pytest.raises(TypeError, match="instruction 1 must be a str"):
        CountingEncoder().encode(["pick", 3])
    with pytest.raises(ValueError, match="must not be empty"):
        CountingEncoder().encode([])


def test_t5_without_local_weights_says_so(tmp_path):
    with pytest.raises(TextEncoderUnavailableError, match="not available locally"):
        T5TextEncoder(str(tmp_path / "no-such-t5"))


MINILM_SCRIPT = """
import json, torch
torch.set_num_threads(1)
from roboscape_r.worldmodel.text_encoder import MiniLMTextEncoder
encoder = MiniLMTextEncoder()
out = encoder.encode(["pick up the red cube", "lift the red block", "push the cube to the goal", "open the drawer"])
similarity = out @ out.T
try:
    encoder.encode([" "])
    empty = "no error"
except ValueError as error:
    empty = str(error)
print(json.dumps({"shape": list(out.shape), "dtype": str(out.dtype), "similarity": similarity.tolist(), "empty": empty}))
"""


def test_minilm_works_offline_with_an_empty_hub_cache(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-c", MINILM_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shape"] == [4, 384] and report["dtype"] == "torch.float32"
    similarity = report["similarity"]
    assert similarity[0][1] > similarity[0][3] + 0.1  # paraphrase closer than an unrelated task
    assert similarity[0][1] > similarity[1][3] + 0.1
    assert "empty or whitespace" in report["empty"]
