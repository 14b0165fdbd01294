"""benchmarks/sampler_pairs.py: runs paired by seed, the paired difference and its t-interval."""
import json

import pytest

from benchmarks import sampler_pairs


def _run(variant: str, seed: int, lips: float, psnr: float = 28.0) -> dict:
    return {"expname": f"clip_{variant}_s{seed}", "seed": seed, "lips": lips, "psnr": psnr}


def test_pairs_by_seed_and_interval(tmp_path):
    runs = [_run("full", 0, 21.0), _run("uni", 0, 20.0), _run("full", 1, 23.0), _run("uni", 1, 21.0),
            _run("full", 2, 22.0, psnr=27.0), _run("uni", 2, 22.0), _run("full", 3, 30.0)]  # seed 3: no pair
    res = sampler_pairs.compare(runs, "clip", [("full", "uni")])
    lips = res["full:uni"]["lips"]
    assert res["full:uni"]["seeds"] == [0, 1, 2]
    assert lips["a"] == [21.0, 23.0, 22.0] and lips["b"] == [20.0, 21.0, 22.0]
    assert lips["mean_diff"] == pytest.approx(1.0)
    assert lips["sd_diff"] == pytest.approx(1.0)  # differences 1, 2, 0
    half = 4.303 * 1.0 / 3 ** 0.5  # t(0.975, 2 dof)
    assert lips["ci95"] == pytest.approx([1.0 - half, 1.0 + half], abs=2e-3)
    assert res["pooled"]["psnr"]["mean_diff"] == pytest.approx(-1 / 3, abs=1e-3)


def test_cli_writes_json_and_png(tmp_path):
    results = tmp_path / "clip.json"
    results.write_text(json.dumps({"runs": [_run("full", 0, 21.0), _run("uni", 0, 20.0), _run("full", 1, 22.0),
                                            _run("uni", 1, 20.5)]}))
    out = tmp_path / "pairs.json"
    assert sampler_pairs.main(["--results", str(results), "--pairs", "full:uni", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["pooled"]["lips"]["mean_diff"] == pytest.approx(1.25)
    assert out.with_suffix(".png").stat().st_size > 1000


def test_missing_results_file(tmp_path, capsys):
    assert sampler_pairs.main(["--results", str(tmp_path / "none.json")]) == 1
    assert "none.json: no such file" in capsys.readouterr().err
