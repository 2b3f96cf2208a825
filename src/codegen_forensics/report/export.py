"""Exporting executed notebooks as self-contained HTML, and HTML as PDF."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from codegen_forensics.errors import ReportError

__all__ = ["export_html", "export_pdf", "find_chromium"]

logger = logging.getLogger(__name__)

_TEMPLATES = Path(__file__).parent / "templates"


def export_html(notebook: nbformat.NotebookNode, html_path: Path, title: str) -> Path:
    """Write the notebook's outputs, without code, as one HTML file.

    Plots are embedded as PNG and nothing is loaded from the network, so the page
    reads the same offline.
    """
    exporter = HTMLExporter(
        template_name="forensics",
        extra_template_basedirs=[str(_TEMPLATES)],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    # nbconvert warns about images without alt text on every plot; it is noise here.
    exporter.log.setLevel(logging.ERROR)
    notebook.metadata["title"] = title
    body, _ = exporter.from_notebook_node(notebook)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(body, encoding="utf-8")
    return html_path


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def export_pdf(html_path: Path, pdf_path: Path, timeout: int = 120) -> Path:
    """Print the HTML report to PDF with headless Chromium."""
    chromium = find_chromium()
    if chromium is None:
        raise ReportError(
            "PDF export needs Chromium, which is not installed; install Debian's "
            "package with `apt-get install chromium`, or use the HTML report"
        )
    with tempfile.TemporaryDirectory(prefix="forensics-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    if result.returncode != 0 or not pdf_path.exists():
        raise ReportError(
            f"Chromium could not print {html_path} to PDF "
            f"(exit {result.returncode}): {result.stderr.strip()[-500:]}"
        )
    return pdf_path
