"""The dataset report: ``skyscript report OUT --out report.html`` (one self-contained HTML page)."""
