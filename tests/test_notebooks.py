"""The notebooks: committed executed with their figures, and they run top to bottom.

The cheap test reads the committed ``.ipynb`` files (no execution): every cell that
saves a figure has an ``image/png`` output (what the repository's web page shows) and
each file is under 2 MB. The execution tests run each notebook in a fresh kernel
(nbclient, via :mod:`depressionmlp.notebooks`) with tiny parameters injected into its
cell tagged ``parameters`` and ``MPLBACKEND=Agg`` (no backend is picked inside the
notebooks), then check every figure was written as a PNG, and that nothing was
written into the repository. Kernel CPU time on tiny inputs: explore_run ~30 s,
hmhn_attention ~45 s, fig6_fig7_heatmaps ~50 s (two trainings: marked slow).
"""

from pathlib import Path

import nbformat
import pytest

from depressionmlp import notebooks as NB

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("explore_run.ipynb", "fig6_fig7_heatmaps.ipynb", "hmhn_attention.ipynb")


def _tree(folder: Path) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}


def _run(name, params: dict, out: Path) -> nbformat.NotebookNode:
    pytest.importorskip("ipykernel")
    before = _tree(NOTEBOOKS)
    nb = NB.execute(NOTEBOOKS / name, {"OUT_DIR": str(out), **params}, backend="Agg",
                    timeout=600)
    assert _tree(NOTEBOOKS) == before, "the notebook wrote into notebooks/"
    return nb


def _check_pngs(out: Path, names):
    for png in names:
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, png


def _text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))


def test_committed_notebooks_show_their_figures_and_stay_small():
    found = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert set(NAMES) <= set(found)
    for name in found:
        path = NOTEBOOKS / name
        assert path.stat().st_size < NB.MAX_BYTES, name
        nb = nbformat.read(path, as_version=4)
        figs = NB.figure_cells(nb)
        assert figs, f"{name}: no figure"
        missing = [nb.cells.index(c) for c in figs if not NB.has_image(c)]
        assert not missing, f"{name}: figure cells {missing} have no image/png output"
        assert NB.check_notebook(path) == []
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1 and "# injected" not in params[0].source, name
        # executed top to bottom, and no matplotlib backend forced inside
        counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
        assert all(counts) and counts == sorted(counts), name
        assert not any("matplotlib.use(" in c.source or "%matplotlib" in c.source
                       for c in nb.cells), name


def test_parameters_are_injected_for_the_run_only():
    nb = nbformat.read(NOTEBOOKS / "explore_run.ipynb", as_version=4)
    original = NB.inject_parameters(nb, {"STEPS": 5, "OUT_DIR": "/x"})
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert cell.source.startswith(original) and cell.source.endswith("STEPS = 5\nOUT_DIR = '/x'")
    assert NB._param("STEPS=7") == ("STEPS", 7) and NB._param("GRID=2x2") == ("GRID", "2x2")


def test_explore_run_notebook(tmp_path):
    out = tmp_path / "out"
    # one model, not the protocol's ensemble of 3: tests/test_explore.py covers ensembles
    nb = _run("explore_run.ipynb", {"STEPS": 4, "N_SUBJECTS": 10, "N_TRACES": 2, "ENSEMBLE": 1},
              out)
    _check_pngs(out, ("predicted_vs_true.png", "error_by_severity.png", "segment_scores.png",
                      "training_curves.png", "largest_errors.png"))
    assert "depressionmlp run 'quick-DG+MG+Linear'" in _text(nb)


def test_hmhn_attention_notebook(tmp_path):
    out = tmp_path / "out"
    nb = _run("hmhn_attention.ipynb",
              {"INPUT_SIZE": 32, "WIDTH": 8, "HEADS": 2, "GRID": "2x2", "EPOCHS": 1,
               "STEPS_PER_EPOCH": 2, "N_SUBJECTS": 10, "FRAMES": 2}, out)
    _check_pngs(out, ("faces.png", "gwa_tile_weights.png", "fig8_attention.png"))
    assert "head shares" in _text(nb)


@pytest.mark.slow   # two trainings: ~50 s of CPU at 2 steps; the cheap test covers its figures
def test_fig6_fig7_heatmaps(tmp_path):
    out = tmp_path / "figs"
    nb = _run("fig6_fig7_heatmaps.ipynb", {"STEPS": 2, "N_SUBJECTS": 8}, out)
    for png in ("fig6_au_gmlp_vs_dg.png", "fig7_mutual_guidance.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, png
    # every heat map keeps the segment's (M, N) shape: DG and gMLP are shape-preserving
    assert "'R_AU (input)': (18, 68), 'after gMLP': (18, 68), 'after DG': (18, 68)" in _text(nb)
