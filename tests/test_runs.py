import json
import math

import numpy as np
import pytest

from depressionmlp.errors import DataError
from depressionmlp.runs import deep_update, load_config, new_run_dir, write_json_atomic


def test_run_dirs_are_fresh(tmp_path):
    a = new_run_dir(tmp_path, "DG+MG+Linear")
    b = new_run_dir(tmp_path, "DG+MG+Linear")
    assert a != b and a.is_dir() and b.is_dir()
    assert a.name.startswith("DG+MG+Linear-")


def test_json_atomic_handles_numpy_and_nan(tmp_path):
    p = tmp_path / "m.json"
    write_json_atomic(p, {"a": np.float32(1.5), "b": np.arange(3), "c": math.nan})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": None}
    assert [f.name for f in tmp_path.iterdir()] == ["m.json"]     # no temp file left


def test_load_config_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname = 1")
    with pytest.raises(DataError, match="bad.toml: not valid TOML"):
        load_config(bad)
    with pytest.raises(DataError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    assert deep_update({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


@pytest.mark.slow
def test_bench_quick_writes_positive_numbers(tmp_path):
    """make bench's program at smoke size (DepressionMLP part): one JSON with the machine
    (the oneDNN setting included) and positive speeds."""
    import json
    from depressionmlp.bench import main
    assert main(["--quick", "--skip-hmhn", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert {"cpus", "tensorflow", "tf_enable_onednn_opts"} <= set(result["machine"])
    assert result["data"]["parse_mb_per_s"] > 0 and result["data"]["segments_total"] > 0
    assert min(result["data"]["load_corpus_mb_per_s"],
               result["data"]["load_corpus_mb_per_s_1_thread"]) > 0
    d = result["depressionmlp"]
    assert d["params"] == 42_192
    assert min(d["train_steps_per_s_jit_false"], d["train_steps_per_s_jit_true"],
               d["infer_segments_per_s"]) > 0
    assert result["peak_rss_mb"] > 0 and "hmhn" not in result
