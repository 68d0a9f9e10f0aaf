"""The README table is rendered from the JSON rows the runs wrote: each number and command comes from one."""

import json

from bench import results_table


def write_row(path, dataset, tag, r10, pop_r10):
    metrics = {"test/recall@5": 0.01, "test/ndcg@5": 0.005, "test/recall@10": r10, "test/ndcg@10": 0.007,
               "test/recall@10_prefix3": r10 + 0.001, "pop/recall@5": 0.002, "pop/ndcg@5": 0.001,
               "pop/recall@10": pop_r10, "pop/ndcg@10": 0.0015}  # fmt: skip
    row = {"dataset": dataset, "tag": tag, "budget": {"rqvae_steps": 20000, "decoder_steps": 1000},
           "metrics": metrics, "date": "2026-11-25", "commit": "abc1234", "machine": "test box",
           "command": f"python -m bench.quality --dataset {dataset} --tag {tag}"}  # fmt: skip
    path.write_text(json.dumps(row))
    return path


def test_rows_numbers_popularity_once_per_dataset_and_commands(tmp_path):
    a = write_row(tmp_path / "a.json", "beauty", "paper", 0.0245, 0.0114)
    b = write_row(tmp_path / "b.json", "beauty", "no_user", 0.0201, 0.0114)
    c = write_row(tmp_path / "c.json", "toys", "paper", 0.0300, 0.0090)
    ev = tmp_path / "e.json"
    ev.write_text(json.dumps({"run": "out/decoder/beauty/cpu-paper", "beam_width": 20,
                              "test/recall@10": 0.0251, "date": "2026-11-25", "commit": "abc1234",
                              "machine": "test box"}))  # fmt: skip
    text = results_table.main([str(a), str(b), str(c), "--eval", str(ev)])
    lines = text.splitlines()
    assert sum("popularity" in line for line in lines) == 2  # beauty once, toys once
    assert any(line.startswith("| 2 | beauty | no_user |") and "0.0201" in line for line in lines)
    assert any("| 0.0114 |" in line and "popularity" in line and "beauty" in line for line in lines)
    assert any(line.startswith("| 4 | beauty | cpu-paper, beam 20 |") and "0.0251" in line for line in lines)
    assert "python -m bench.quality --dataset toys --tag paper" in text
    assert "python -m evaluate.run out/decoder/beauty/cpu-paper --beam-width 20" in text
    published = [line for line in lines if "**published**" in line]
    assert len(published) == len(results_table.PUBLISHED) and "0.0648" in published[0]
