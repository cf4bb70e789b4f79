import numpy as np
import pytest
import torch

from roboscape_r.worldmodel.rollout import WorldModelRollout
from roboscape_r.worldmodel.world_model import WorldModel

from tests.worldmodel.conftest import FakeTokenizer, random_frames, tiny_config


def make_model(cond="act", **overrides):
    torch.manual_seed(0)
    return WorldModel(tiny_config(cond, **overrides)).eval()


def reference_rollout(model, first_tokens, actions, keep):
    """Greedy rollout that recomputes every step from scratch over the same window, no cache.

    The window rule mirrors the documented one: frames are appended until the context is
    full; the next step restarts from the last `keep - 1` frames plus the current frame.
    """
    context = model.config.context_frames
    history_tokens, history_actions = [], []  # the frames in the window, current one excluded
    current = first_tokens
    tokens_out, done_out = [], []
    for step in range(actions.shape[1]):
        if len(history_tokens) == context:
            history_tokens = history_tokens[context - (keep - 1):] if keep > 1 else []
            history_actions = history_actions[context - (keep - 1):] if keep > 1 else []
        history_tokens.append(current)
        history_actions.append(actions[:, step])
        with torch.no_grad():
            out = model(torch.stack(history_tokens, dim=1), actions=torch.stack(history_actions, dim=1))
        current = out.next_token_logits[:, -1].argmax(dim=-1).view_as(first_tokens)
        tokens_out.append(current)
        done_out.append(torch.sigmoid(out.done_logits[:, -1]))
    return torch.stack(tokens_out, dim=1), torch.stack(done_out, dim=1)


@pytest.mark.parametrize("keep", [1, 2, 4])
def test_cached_rollout_equals_recomputation_across_window_slides(keep):
    model = make_model()
    tokenizer = FakeTokenizer()
    frames = random_frames(3)
    actions = torch.randn(3, 11, 3, generator=torch.Generator().manual_seed(2))  # 11 steps > 2 slides of 4
    rollout = WorldModelRollout(model, tokenizer, window_keep_frames=keep)
    rollout.reset(frames)
    steps = [rollout.step_tokens(actions[:, t]) for t in range(actions.shape[1])]
    tokens = torch.stack([s.tokens for s in steps], dim=1)
    done = torch.stack([s.done_prob for s in steps], dim=1)
    ref_tokens, ref_done = reference_rollout(model, tokenizer.encode(frames), actions, keep)
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(done, ref_done, atol=1e-5, rtol=1e-5)


def test_step_returns_decoded_frames_and_done_probabilities():
    model = make_model()
    tokenizer = FakeTokenizer()
    rollout = WorldModelRollout(model, tokenizer)
    first = rollout.reset(random_frames(2))
    assert first.shape == (2, 16, 16, 3) and first.dtype == torch.uint8
    frames, done_prob = rollout.step(np.zeros((2, 3), dtype=np.float32))  # numpy accepted
    assert frames.shape == (2, 16, 16, 3) and frames.dtype == torch.uint8
    assert done_prob.shape == (2,) and done_prob.dtype == torch.float32
    assert ((done_prob > 0) & (done_prob < 1)).all()
    assert rollout.num_steps == 1


def test_done_head_reaches_the_rollout():
    model = make_model()
    with torch.no_grad():
        model.done_head[-1].bias.fill_(5.0)
        model.done_head[-1].weight.zero_()
    rollout = WorldModelRollout(model, FakeTokenizer())
    rollout.reset(random_frames(2))
    _, done_prob = rollout.step(torch.zeros(2, 3))
    torch.testing.assert_close(done_prob, torch.sigmoid(torch.tensor([5.0, 5.0])))


def run_sampled(seed, steps=6, reset_seed=None, **kwargs):
    rollout = WorldModelRollout(make_model(), FakeTokenizer(), temperature=1.0, seed=seed, **kwargs)
    rollout.reset(random_frames(4), seed=reset_seed)
    actions = torch.randn(4, steps, 3, generator=torch.Generator().manual_seed(3))
    return torch.stack([rollout.step(actions[:, t]).frames_uint8 for t in range(steps)], dim=1)


def test_sampling_is_deterministic_under_a_seed():
    first, again, other = run_sampled(seed=7), run_sampled(seed=7), run_sampled(seed=8)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal(run_sampled(seed=None, reset_seed=7), first)
    assert torch.equal(run_sampled(seed=7, top_k=4), run_sampled(seed=7, top_k=4))


def test_top_1_sampling_is_greedy():
    model = make_model()
    greedy = WorldModelRollout(model, FakeTokenizer())
    top1 = WorldModelRollout(model, FakeTokenizer(), temperature=2.0, top_k=1, seed=0)
    frames = random_frames(2)
    greedy.reset(frames)
    top1.reset(frames)
    for _ in range(3):
        action = torch.randn(2, 3)
        assert torch.equal(greedy.step(action).frames_uint8, top1.step(action).frames_uint8)


def test_generate_golden_equals_stepping():
    model = make_model("txt")
    tokenizer = FakeTokenizer()
    frames, instruction = random_frames(2), torch.randn(2, 8)
    rollout = WorldModelRollout(model, tokenizer)
    golden = rollout.generate_golden(frames, instruction, num_frames=6)
    assert golden.frames_uint8.shape == (2, 6, 16, 16, 3) and golden.frames_uint8.dtype == torch.uint8
    assert golden.done_prob.shape == (2, 6)
    rollout.reset(frames, instruction)
    for k in range(6):
        frame, done_prob = rollout.step()
        assert torch.equal(frame, golden.frames_uint8[:, k])
        torch.testing.assert_close(done_prob, golden.done_prob[:, k])


def test_bad_frames_are_refused():
    rollout = WorldModelRollout(make_model(), FakeTokenizer())
    frames = random_frames(2)
    with pytest.raises(ValueError, match="uint8"):
        rollout.reset(frames.float())
    with pytest.raises(ValueError, match=r"channels-first \(2, 3, 16, 16\)"):
        rollout.reset(frames.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="frames must be 16x16, got 32x32"):
        rollout.reset(random_frames(2, image_size=32))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        rollout.reset(frames[0])
    no_size = WorldModelRollout(make_model(), FakeTokenizer(), image_size=None)
    no_size.image_size = None  # a tokenizer without image_size: only the grid can be checked
    with pytest.raises(ValueError, match=r"tokenize to grid \(8, 8\), but the world model expects \(4, 4\)"):
        no_size.reset(random_frames(2, image_size=32))


def test_bad_actions_and_conditioning_are_refused():
    rollout = WorldModelRollout(make_model(), FakeTokenizer())
    with pytest.raises(RuntimeError, match="reset"):
        rollout.step(torch.zeros(2, 3))
    rollout.reset(random_frames(2))
    with pytest.raises(ValueError, match=r"action_dim=3\), got \(2, 7\)"):
        rollout.step(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="batch 3 but the rollout was reset with batch 2"):
        rollout.step(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="WM_act needs actions"):
        rollout.step()
    with pytest.raises(ValueError, match="floating point"):
        rollout.step(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="do not pass instruction_embeddings"):
        rollout.reset(random_frames(2), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="needs a WM_txt model"):
        rollout.generate_golden(random_frames(2), torch.zeros(2, 8), 3)

    txt = WorldModelRollout(make_model("txt"), FakeTokenizer())
    with pytest.raises(ValueError, match="needs instruction_embeddings"):
        txt.reset(random_frames(2))
    with pytest.raises(ValueError, match=r"must be \(2, 8\), got \(3, 8\)"):
        txt.reset(random_frames(2), torch.zeros(3, 8))
    txt.reset(random_frames(2), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="takes no actions"):
        txt.step(torch.zeros(2, 3))


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -1.0}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"window_keep_frames": 5}, "window_keep_frames"),
])
def test_bad_rollout_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WorldModelRollout(make_model(), FakeTokenizer(), **kwargs)


def test_batch_size_can_change_between_resets():
    rollout = WorldModelRollout(make_model(), FakeTokenizer())
    rollout.reset(random_frames(2))
    rollout.step(torch.zeros(2, 3))
    rollout.reset(random_frames(5))
    frames, done_prob = rollout.step(torch.zeros(5, 3))
    assert frames.shape[0] == 5 and done_prob.shape == (5,)


def test_head_in_chunks_equals_one_chunk(monkeypatch):
    import roboscape_r.worldmodel.rollout as rollout_module

    def run(temperature):
        rollout = WorldModelRollout(make_model(), FakeTokenizer(), temperature=temperature, seed=3)
        rollout.reset(random_frames(3))
        actions = torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(4))
        return torch.stack([rollout.step_tokens(actions[:, t]).tokens for t in range(5)], dim=1)

    whole_greedy, whole_sampled = run(0.0), run(1.0)
    monkeypatch.setattr(rollout_module, "HEAD_CHUNK_TOKENS", 7)  # 48 rows -> 7 chunks, the last partial
    assert torch.equal(run(0.0), whole_greedy)
    chunked_sampled = run(1.0)
    assert torch.equal(chunked_sampled, run(1.0))
    assert chunked_sampled.shape == whole_sampled.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rollout_matches_cpu_and_is_seeded():
    model = make_model()
    frames = random_frames(4)
    actions = torch.randn(4, 10, 3, generator=torch.Generator().manual_seed(5))

    def run(device, **kwargs):
        rollout = WorldModelRollout(model.to(device), FakeTokenizer(), **kwargs)
        rollout.reset(frames)
        steps = [rollout.step(actions[:, t]) for t in range(10)]
        return torch.stack([s.frames_uint8.cpu() for s in steps], 1), torch.stack([s.done_prob.cpu() for s in steps], 1)

    cpu_frames, cpu_done = run("cpu")
    cuda_frames, cuda_done = run("cuda")
    assert torch.equal(cuda_frames, cpu_frames)
    torch.testing.assert_close(cuda_done, cpu_done, atol=1e-4, rtol=1e-4)
    sampled = run("cuda", temperature=1.0, top_k=8, seed=1)[0]
    assert torch.equal(sampled, run("cuda", temperature=1.0, top_k=8, seed=1)[0])


def test_token_level_api_checks_its_tokens():
    rollout = WorldModelRollout(make_model(), tokenizer=None)
    with pytest.raises(ValueError, match=r"must be in \[0, 16\), got values in \[16, 16\]"):
        rollout.reset_tokens(torch.full((2, 4, 4), 16))
    with pytest.raises(ValueError, match=r"first tokens must be \(B, 4, 4\)"):
        rollout.reset_tokens(torch.zeros(2, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="integer ids"):
        rollout.reset_tokens(torch.zeros(2, 4, 4))
    rollout.reset_tokens(torch.zeros(2, 4, 4, dtype=torch.long))
    tokens, done_prob = rollout.step_tokens(torch.zeros(2, 3))
    assert tokens.shape == (2, 4, 4) and tokens.dtype == torch.long and done_prob.shape == (2,)
    with pytest.raises(RuntimeError, match="no tokenizer"):
        rollout.step(torch.zeros(2, 3))


def test_spatial_head_decodes_golden_trajectories():
    from roboscape_r.worldmodel.spatial_head import SpatialARHead, SpatialHeadConfig

    model = make_model("txt")
    frames, instruction = random_frames(3), torch.randn(3, 8)
    torch.manual_seed(1)
    head = SpatialARHead(SpatialHeadConfig.for_world_model(model.config, width=16, n_layers=1, n_heads=2))
    plain = WorldModelRollout(model, FakeTokenizer()).generate_golden(frames, instruction, 5)
    # an untrained head adds nothing: greedy token-by-token decoding equals all-at-once decoding
    untrained = WorldModelRollout(model, FakeTokenizer(), spatial_head=head).generate_golden(frames, instruction, 5)
    assert torch.equal(untrained.frames_uint8, plain.frames_uint8)
    torch.nn.init.normal_(head.out.weight, std=1.0)
    trained = WorldModelRollout(model, FakeTokenizer(), spatial_head=head).generate_golden(frames, instruction, 5)
    assert not torch.equal(trained.frames_uint8, plain.frames_uint8)

    def sampled(seed):
        rollout = WorldModelRollout(model, FakeTokenizer(), temperature=1.0, seed=seed, spatial_head=head)
        return rollout.generate_golden(frames, instruction, 5).frames_uint8

    assert torch.equal(sampled(3), sampled(3)) and not torch.equal(sampled(3), sampled(4))


def test_spatial_head_of_another_grid_is_refused():
    from roboscape_r.worldmodel.spatial_head import SpatialARHead, SpatialHeadConfig

    head = SpatialARHead(SpatialHeadConfig(num_tokens=9, codebook_size=16, d_model=32, width=16, n_heads=2))
    with pytest.raises(ValueError, match="built for 9 tokens"):
        WorldModelRollout(make_model("txt"), FakeTokenizer(), spatial_head=head)


def test_anchor_frames_keep_the_real_anchor_where_nothing_changed_and_the_change_elsewhere():
    from roboscape_r.worldmodel.rollout import anchor_frames

    generator = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8, generator=generator)
    recon = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8, generator=generator)
    decoded = recon[:, None].repeat(1, 3, 1, 1, 1)  # (B, T, H, W, 3): three frames equal to the anchor's recon
    decoded[:, 1, :4] = 17  # the prediction changed the top half of frame 1
    anchored = anchor_frames(decoded, real, recon)
    assert anchored.shape == decoded.shape and anchored.dtype == torch.uint8
    assert torch.equal(anchored[:, 0], real) and torch.equal(anchored[:, 2], real)
    assert torch.equal(anchored[:, 1, 4:], real[:, 4:])
    expected = (17 + real[:, :4].int() - recon[:, :4].int()).clamp(0, 255).to(torch.uint8)
    assert torch.equal(anchored[:, 1, :4], expected)
    assert torch.equal(anchor_frames(decoded[:, 0], real, recon), real)  # (B, H, W, 3) works too
    with pytest.raises(ValueError, match="does not fit anchors"):
        anchor_frames(decoded, real[:1], recon[:1])
