"""The committed small-experiment results: their report is what `roboscape report` builds from the
committed files alone, it lists no missing piece, and every figure loads in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from roboscape_r.report import ReportConfig, build_report
from tests.report.chromium import CHROMIUM, image_widths
from tests.report.test_report import md_table

RESULTS = Path(__file__).resolve().parents[2] / "results" / "experiment-small-2026-12-07"
COMPARED = ("success_once, pooled over seeds", "success_once per OOD factor", "OOD success_once of general vs each baseline",
            "success_once of general vs each baseline, episode by episode", "Reward check", "Full-frame PSNR", "Per cell")
"""Tables whose every number comes from the run's files (captions as the report writes them)."""


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    out = tmp_path_factory.mktemp("committed") / "report"
    result = build_report(ReportConfig(RESULTS, out=out))
    return result, out


def test_the_committed_report_is_rebuilt_from_the_committed_files(rebuilt):
    result, out = rebuilt
    assert result.missing == [] and len(result.figures) == 4
    committed = (RESULTS / "report" / "REPORT.md").read_text()
    fresh = (out / "REPORT.md").read_text()
    for caption in COMPARED:
        assert md_table(fresh, caption) == md_table(committed, caption), caption
    assert "+21.1%" in fresh  # the headline the README and the results' README quote


@pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary (scripts/setup.sh installs Debian's chromium)")
def test_every_figure_of_the_committed_report_loads_in_headless_chromium(tmp_path):
    widths = image_widths(RESULTS / "report", tmp_path)
    assert sorted(widths) == sorted(f"figures/{p.name}" for p in (RESULTS / "report" / "figures").glob("*.png"))
    assert len(widths) == 4 and all(width > 0 for width in widths.values()), widths
