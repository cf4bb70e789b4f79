"""Results report: figures, tables and an HTML/Markdown page rebuilt from an experiment's run folder."""

from roboscape_r.report.build import ReportConfig, ReportResult, build_report
from roboscape_r.report.run_folder import RunData, load_run

__all__ = ["ReportConfig", "ReportResult", "RunData", "build_report", "load_run"]
