"""Running the report notebooks headless with papermill."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
from papermill.exceptions import PapermillExecutionError

from codegen_forensics.errors import InputError, ReportError

__all__ = ["NOTEBOOKS", "execute_notebook", "notebook_path"]

logger = logging.getLogger(__name__)

NOTEBOOKS = {
    "weekly": "weekly_dlq_review.ipynb",
    "session": "session_analysis.ipynb",
}
_PACKAGED = Path(__file__).parent / "notebooks"


def notebook_path(name: str) -> Path:
    """The path of a report notebook, ``weekly`` or ``session``, or of a file."""
    path = _PACKAGED / NOTEBOOKS[name] if name in NOTEBOOKS else Path(name)
    if not path.exists():
        known = ", ".join(NOTEBOOKS)
        raise InputError(f"notebook {name!r} does not exist; known notebooks: {known}")
    return path


def _cell_label(cell: Any, index: int) -> str:
    """``cell 7 'dlq-taxonomy'``: its position and its id or first line."""
    name = cell.get("id") or ""
    first = next(
        (
            line.strip("# ").strip()
            for line in cell.get("source", "").splitlines()
            if line.strip()
        ),
        "",
    )
    label = name if name and not name.startswith("papermill") else first
    return f"cell {index} {label!r}" if label else f"cell {index}"


def execute_notebook(
    notebook: Path,
    output: Path,
    parameters: dict[str, Any],
    *,
    timeout: int = 900,
    cwd: Path | None = None,
) -> nbformat.NotebookNode:
    """Execute ``notebook`` with ``parameters`` into ``output`` on a fresh kernel.

    A failing cell raises :class:`ReportError` naming the cell and the error; the
    executed notebook, with the traceback, is still written to ``output``.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    logger.info("executing notebook=%s output=%s", notebook, output)
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
            cwd=str(cwd) if cwd else None,
            # The kernel listens on loopback only; its warning about unencrypted
            # TCP would be the first line a reviewer reads.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except PapermillExecutionError as exc:
        # papermill puts an error banner at the top of the executed notebook, so
        # find the failing cell by its source, not by its index.
        executed = nbformat.read(output, as_version=4)
        index, cell = next(
            (
                (i, c)
                for i, c in enumerate(executed.cells)
                if c.cell_type == "code" and c.source == exc.source
            ),
            (exc.cell_index, executed.cells[exc.cell_index]),
        )
        # Number the cell as it stands in the notebook the user has.
        source = nbformat.read(notebook, as_version=4)
        index = next(
            (i for i, c in enumerate(source.cells) if c.get("id") == cell.get("id")),
            index,
        )
        raise ReportError(
            f"notebook {notebook.name} failed in {_cell_label(cell, index)}: "
            f"{exc.ename}: {exc.evalue} (the executed notebook is at {output})"
        ) from exc
    result: nbformat.NotebookNode = nbformat.read(output, as_version=4)
    return result
