"""The notebooks run top to bottom (nbclient) and write their figures."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _run(name, params: dict, cwd) -> nbformat.NotebookNode:
    os.environ["MPLBACKEND"] = "Agg"      # the kernel inherits it; notebooks draw inline in Jupyter
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def test_fig6_fig7_heatmaps(tmp_path):
    pytest.importorskip("ipykernel")
    out = tmp_path / "figs"
    nb = _run("fig6_fig7_heatmaps.ipynb", {"OUT_DIR": str(out), "STEPS": 6}, tmp_path)
    for png in ("fig6_au_gmlp_vs_dg.png", "fig7_mutual_guidance.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, png
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    # every heat map keeps the segment's (M, N) shape: DG and gMLP are shape-preserving
    assert "'R_AU (input)': (18, 68), 'after gMLP': (18, 68), 'after DG': (18, 68)" in text
