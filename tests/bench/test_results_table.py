"""The results tables (README, docs/results.md) are rendered from the JSON rows the runs wrote: each number
and command comes from one."""

import json

from bench import results_table


def write_row(path, dataset, tag, r10, pop_r10, command_extra="", **extra):
    metrics = {"test/recall@5": 0.01, "test/ndcg@5": 0.005, "test/recall@10": r10, "test/ndcg@10": 0.007,
               "test/recall@10_prefix3": r10 + 0.001, "pop/recall@5": 0.002, "pop/ndcg@5": 0.001,
               "pop/recall@10": pop_r10, "pop/ndcg@10": 0.0015}  # fmt: skip
    command = f"python -m bench.quality --dataset {dataset} --tag {tag}{command_extra}"
    row = {"dataset": dataset, "protocol": "cpu", "tag": tag, "metrics": metrics, "command": command,
           "budget": {"rqvae_steps": 20000, "decoder_steps": 1000},
           "wall_s": {"rqvae": 5.0, "decoder": 1200.0},
           "date": "2026-11-25", "commit": "abc1234", "machine": "test box", "decoder_resumed": False,
           **extra}  # fmt: skip
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
    assert any(line.startswith("| 2 | beauty | cpu-no_user |") and "0.0201" in line for line in lines)
    assert any("| 0.0114 |" in line and "popularity" in line and "beauty" in line for line in lines)
    assert any(line.startswith("| 4 | beauty | cpu-paper, beam 20 |") and "0.0251" in line for line in lines)
    assert "python -m bench.quality --dataset toys --tag paper" in text
    assert "python -m evaluate.run out/decoder/beauty/cpu-paper --beam-width 20" in text
    published = [line for line in lines if "**published**" in line]
    assert len(published) == len(results_table.PUBLISHED) and "0.0648" in published[0]


def row_line(text: str, n: int) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {n} |"))


def test_budget_names_rq_kmeans_and_wall_time_says_which_steps_a_resumed_invocation_covers(tmp_path):
    fresh = write_row(tmp_path / "a.json", "beauty", "paper", 0.0245, 0.0114)
    kmeans = write_row(
        tmp_path / "b.json", "beauty", "rq_kmeans", 0.0267, 0.0114,
        command_extra=" --rqvae-gin 'train_rqvae.tokenizer = \"rq_kmeans\"'",
    )  # fmt: skip
    budget = {"rqvae_steps": 20000, "decoder_steps": 3000}
    longer = write_row(tmp_path / "c.json", "beauty", "paper3k", 0.03, 0.0114, decoder_start_step=1000,
                       decoder_resumed=True, budget=budget)  # fmt: skip
    old = write_row(tmp_path / "d.json", "beauty", "old", 0.02, 0.0114, decoder_resumed=True)
    legacy = write_row(tmp_path / "e.json", "beauty", "legacy", 0.02, 0.0114)
    legacy.write_text(
        json.dumps({k: v for k, v in json.loads(legacy.read_text()).items() if k != "decoder_resumed"})
    )
    text = results_table.main([str(p) for p in (fresh, kmeans, longer, old, legacy)])
    assert "RQ-VAE 20,000 steps; decoder 1,000 steps" in row_line(text, 1)
    assert "| 20 min |" in row_line(text, 1)
    assert "RQ-KMeans (fitted); decoder 1,000 steps" in row_line(text, 2)
    assert "RQ-VAE" not in row_line(text, 2)
    assert "decoder 3,000 steps" in row_line(text, 3) and "20 min (steps 1,000–3,000)" in row_line(text, 3)
    assert "20 min (resumed: part of the run)" in row_line(text, 4)
    assert "20 min (last invocation; resume not recorded)" in row_line(text, 5)
    widths = {line.count(" | ") for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert len(widths) == 1  # every row (published, measured, popularity, re-evaluated) has every column


def test_study_table_shows_valid_and_test_with_standard_errors(tmp_path):
    extra = {"valid_full/recall@10": 0.05, "valid_full/recall@10_se": 0.0015, "test/recall@10_se": 0.0014}
    a = write_row(tmp_path / "a.json", "beauty", "constant", 0.0455, 0.0114,
                  " --decoder-config configs/decoder_amazon_paper.gin configs/recipes/constant_lr1e-3.gin",
                  examples=1_000_192, selected_step=3000)  # fmt: skip
    row = json.loads(a.read_text())
    row["metrics"].update(extra)
    a.write_text(json.dumps(row))
    sasrec = tmp_path / "s.json"
    sasrec.write_text(json.dumps({"dataset": "amazon-beauty", "run": "out/sasrec/beauty/default",
                                  "test/recall@10": 0.06, "test/recall@10_se": 0.0016, "examples": 128,
                                  "command": "python -m evaluate.sasrec configs/sasrec_amazon.gin",
                                  "date": "2026-12-01", "commit": "abc", "machine": "box"}))  # fmt: skip
    lines = results_table.main([str(a), str(sasrec), "--study"]).splitlines()
    first = next(line for line in lines if line.startswith("| 1 |"))
    assert "decoder_amazon_paper + constant_lr1e-3" in first and "1,000,192" in first and "| 3000 |" in first
    assert "0.0500 ± 0.0015" in first and "0.0455 ± 0.0014" in first
    second = next(line for line in lines if line.startswith("| 2 |"))
    assert "| default | sasrec_amazon |" in second and "0.0600 ± 0.0016" in second
