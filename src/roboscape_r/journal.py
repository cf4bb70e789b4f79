"""A JSON-lines journal of finished work, so that a long job stopped part-way resumes where it stopped.

A job (a policy's evaluation, a reward check) appends one JSON object per finished piece of work
to its journal, flushed and synced, and skips the pieces a journal of the same job already holds.
The job's result must not depend on which pieces were journaled, so a resumed run writes what a
straight run would.

File layout: a header line ``{"journal": FORMAT, "key": {...}}``, then one entry per line. The key
holds everything the entries depend on (settings, digests of the files read); a journal whose
header differs belongs to another job and is moved aside to ``*.stale``. A line cut short by a
crash ends the journal: its piece simply runs again. ``finish()`` removes the journal once the
job's result is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from roboscape_r.atomic import atomic_write_bytes


class Journal:
    """Reads the entries a previous run of the same job finished, and appends new ones.

    Args:
        path: the journal file.
        format: names the job's entry layout (``"roboscape-eval-journal-v1"``); part of the header.
        key: what must match for entries to be reused; None writes no journal and reuses none (a
            job that a later run could not recognise, such as a policy built in memory).
    """

    def __init__(self, path: str | Path, format: str, key: dict[str, Any] | None) -> None:
        self.path = Path(path)
        self.format = format
        self.key = key
        self.stale: Path | None = None
        """Where `read` moved a journal of another job (None if it moved none)."""
        self._file = None

    def read(self) -> list[dict[str, Any]]:
        """The entries of an existing journal of this job, in order ([] if there is none).

        A journal of another job (other format or key) is moved to ``*.stale`` (``self.stale``). A torn last line and anything after it is dropped, and the file is rewritten without
        it (atomically, so a crash here loses nothing kept), so that appends start on a line of
        their own.
        """
        if not self.path.is_file():
            return []
        lines = self.path.read_text().splitlines()
        header = _parse(lines[0]) if lines else None
        if self.key is None or header is None or header.get("journal") != self.format or header.get("key") != self.key:
            self.stale = self.path.with_name(self.path.name + ".stale")
            os.replace(self.path, self.stale)
            return []
        entries, kept = [], [lines[0]]
        for line in lines[1:]:
            entry = _parse(line)
            if entry is None:  # cut short by a crash: this and anything after it runs again
                break
            entries.append(entry)
            kept.append(line)
        atomic_write_bytes(self.path, ("\n".join(kept) + "\n").encode())
        return entries

    def append(self, entry: dict[str, Any]) -> None:
        """Record one finished piece of work (a JSON-serialisable dict); durable on return."""
        if self.key is None:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.is_file()
            self._file = self.path.open("a")
            if fresh:
                self._file.write(json.dumps({"journal": self.format, "key": self.key}) + "\n")
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def finish(self) -> None:
        """Close and remove the journal (once the job's result is written)."""
        self.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _parse(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
