import json

import pytest

from bench import plot_curves


def write_run(path, rows):
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_series_on_every_x_axis(tmp_path):
    run = tmp_path / "beauty" / "cpu-x"
    first = {"step": 100, "train/loss": 3.0, "perf/examples": 25600, "perf/train_wall_s": 60.0}
    second = {"step": 200, "train/loss": 2.0, "valid/recall@10": 0.02, "perf/examples": 51200}
    write_run(run, [first, {**second, "perf/train_wall_s": 7200.0}])
    assert plot_curves.read_series(run, "train/loss") == ([100, 200], [3.0, 2.0])
    assert plot_curves.read_series(run, "valid/recall@10", "examples") == (pytest.approx([0.0512]), [0.02])
    assert plot_curves.read_series(run, "valid/recall@10", "wall") == (pytest.approx([2.0]), [0.02])
    out = tmp_path / "ttq.png"
    plot_curves.main([str(run), "--keys", "valid/recall@10", "train/loss", "--x", "examples", "wall",
                      "--overlay", "--out", str(out)])  # fmt: skip
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
