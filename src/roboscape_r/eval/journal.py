"""An evaluation's journal of finished episodes, so an interrupted evaluation resumes where it stopped.

A policy's evaluation in the small experiment takes about an hour of rendering; a stop part-way
(a crash, a machine going away) would otherwise lose every finished episode. The driver appends
each finished lockstep batch to ``OUT/episodes.journal.jsonl`` as it arrives (one JSON line,
flushed and synced). A rerun with the same evaluation (same policy files, tasks, scenes, counts,
horizon, seed, env module and video settings) keeps those episodes and runs only the rest; results
do not depend on how episodes are batched, so the final ``results.json`` is the one a straight run
gives. The journal is removed once ``results.json`` is written.

A :class:`roboscape_r.journal.Journal` with one entry per batch: ``{"records": [...], "videos":
[...], "elapsed_s": cumulative wall seconds}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from roboscape_r.data.format import sha256_file
from roboscape_r.journal import Journal

JOURNAL_NAME = "episodes.journal.jsonl"
FORMAT = "roboscape-eval-journal-v1"
_NOT_IN_KEY = ("out", "workers", "envs_per_worker", "policy")
"""Config fields that do not change an episode's record: where results go, and how episodes are
spread over processes and lockstep batches (tested: results do not depend on it). The policy path is
replaced by the digest of the files it loaded."""


def policy_fingerprint(policy: Any) -> str | None:
    """SHA-256 over what a policy was loaded from, or None when it was loaded from no file (an object
    built in memory: its episodes are then never reused).

    A :class:`~roboscape_r.policy.router.TaskRouter` counts its router file and every routed policy's
    checkpoint; any other policy its ``source`` file. A policy checkpoint counts by its weights, not
    its bytes: one rebuilt from a slim copy (`roboscape_r.policy.checkpoint.restore_slim_policy`,
    e.g. on another machine) keeps the journal of the original.
    """
    routed = getattr(policy, "policies", None)
    members = [policy, *routed.values()] if isinstance(routed, dict) else [policy]
    files = [getattr(member, "source", None) for member in members]
    if any(path is None or not Path(path).is_file() for path in files):
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(_file_digest(Path(path)).encode())
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    from roboscape_r.checkpoint import CheckpointError
    from roboscape_r.policy.checkpoint import read_policy_checkpoint, weights_digest

    if path.suffix == ".pt":
        try:
            return "weights:" + weights_digest(read_policy_checkpoint(path)["model"])
        except CheckpointError:
            pass  # not a policy checkpoint: its bytes count
    return sha256_file(path)


def journal_key(config_json: dict, fingerprint: str) -> dict:
    """What must match for a journal's episodes to be reused."""
    return {"policy_sha256": fingerprint, **{k: v for k, v in config_json.items() if k not in _NOT_IN_KEY}}


class EvalJournal:
    """Reads the episodes a previous run of the same evaluation finished, and appends new ones."""

    def __init__(self, out: Path, key: dict | None) -> None:
        """Args:
            out: the evaluation's output folder.
            key: :func:`journal_key` of this evaluation; None (a policy built in memory, which a
                later run cannot recognise) writes no journal and reuses none.
        """
        self._journal = Journal(Path(out) / JOURNAL_NAME, FORMAT, key)
        self.path = self._journal.path
        self.records: list[dict] = []
        self.videos: list[dict] = []
        self.elapsed_s = 0.0
        self.note = ""
        """What happened to an existing journal (for the caller to print)."""

    def load(self, planned: Iterable[tuple[str, int]]) -> None:
        """Keep the journal's episodes of ``planned`` (env id, episode index) pairs.

        A journal of another evaluation (other key) is moved to ``*.stale`` and not used. A recorded
        video whose files are gone sends its episode back to be run again.
        """
        existed = self.path.is_file()
        batches = self._journal.read()
        if self._journal.stale is not None:
            self.note = (f"{self.path} belongs to another evaluation (other policy files or settings) and was moved to "
                         f"{self._journal.stale}; every episode runs again")
            return
        if not existed:
            return
        planned = set(planned)
        done: set[tuple[str, int]] = set()
        for batch in batches:
            self.elapsed_s = float(batch.get("elapsed_s", self.elapsed_s))
            videos = {(v["env_id"], v["episode_index"]): v for v in batch.get("videos", [])}
            for record in batch.get("records", []):
                ident = (record["env_id"], record["episode_index"])
                video = videos.get(ident)
                if ident not in planned or ident in done:
                    continue
                if video is not None and not all((self.path.parent / video[k]).is_file() for k in ("mp4", "gif", "strip")):
                    continue
                done.add(ident)
                self.records.append(record)
                if video is not None:
                    self.videos.append(video)
        self.note = f"resuming: {len(self.records)} finished episode(s) kept from {self.path}"

    def done_ids(self) -> set[tuple[str, int]]:
        return {(r["env_id"], r["episode_index"]) for r in self.records}

    def append(self, records: list[dict], videos: list[dict], elapsed_s: float) -> None:
        """Record one finished batch (records without frames; their videos' entries)."""
        self._journal.append({"records": records, "videos": videos, "elapsed_s": elapsed_s})

    def finish(self) -> None:
        """Close and remove the journal (called once results.json is written)."""
        self._journal.finish()

    def close(self) -> None:
        self._journal.close()
