"""The `assistant` command line, run in-process through `main()` (same code as the console script)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.cli import main


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "harbour.txt").write_text(
        "The harbour of Vessa was rebuilt in 1954 after a storm destroyed the old pier.\n"
        "The new pier is 420 metres long and was designed by engineer Tove Rask.\n", encoding="utf-8")
    (root / "empty.txt").write_text("", encoding="utf-8")
    (root / "notes.xyz").write_text("ignored", encoding="utf-8")
    return root


def test_ingest_ask_search_documents_remove_and_eval(corpus: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    index = str(tmp_path / "index")
    assert main(["--index-dir", index, "ingest", str(corpus), "--no-progress"]) == 1  # empty.txt failed
    out = capsys.readouterr().out
    assert "1 added" in out and "1 failed" in out and "1 skipped" in out
    assert "empty.txt: empty file" in out and "notes.xyz: unsupported type .xyz" in out

    assert main(["ask", "How long is the new pier?", "--index-dir", index, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["abstained"] is False and "420 metres" in data["answer"]
    assert data["citations"][0]["quote"] in (corpus / "harbour.txt").read_text()

    assert main(["search", "pier designer", "--index-dir", index]) == 0
    assert "harbour.txt" in capsys.readouterr().out

    session = ["--index-dir", index, "--session", "t1"]
    assert main(["ask", "Who designed the new pier?", *session]) == 0
    assert "Tove Rask" in capsys.readouterr().out
    assert main(["ask", "When was it rebuilt?", *session]) == 0
    out = capsys.readouterr().out
    assert "1954" in out and "read as:" in out

    golden = tmp_path / "golden.jsonl"
    golden.write_text("\n".join([
        json.dumps({"id": "a", "question": "When was the harbour rebuilt?", "answers": ["1954"],
                    "evidence": ["rebuilt in 1954"]}),
        json.dumps({"id": "u", "question": "What is the population of Mars?", "answerable": False}),
        "not json",
    ]) + "\n")
    md = tmp_path / "report.md"
    report_json = tmp_path / "report.json"
    assert main(["eval", str(golden), "--index-dir", index, "--markdown", str(md), "--json", str(report_json),
                 "--min-accuracy", "1.0", "--min-abstention-accuracy", "1.0"]) == 0
    captured = capsys.readouterr()
    assert "golden.jsonl:3" in captured.err
    assert json.loads(report_json.read_text())["totals"]["answer_accuracy"] == 1.0
    assert "| answer_accuracy | 1.000 |" in md.read_text()
    assert main(["eval", str(golden), "--index-dir", index, "--min-citation-precision", "1.01"]) == 1
    assert "GATE FAILED" in capsys.readouterr().err

    assert main(["documents", "--index-dir", index, "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)["documents"]
    assert [Path(d["source"]).name for d in docs] == ["harbour.txt"]
    assert main(["remove", docs[0]["id"], "--index-dir", index]) == 0
    assert main(["documents", "--index-dir", index, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("removed:")[-1].split("\n", 1)[1])["documents"] == []


def test_missing_index_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "anything?", "--index-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no index at" in err and "assistant ingest" in err
