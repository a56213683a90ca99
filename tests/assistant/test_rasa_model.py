"""The trained Rasa model: conversation stories (`rasa test core`) and intent classification on
a held-out NLU test set (`rasa test nlu`), as Rasa's own test commands report them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from bot.assistant import rasa_command, rasa_environment
from bot.config import load_settings

REPO = Path(__file__).resolve().parents[2]
MIN_MACRO_F1 = 0.90


def rasa(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        rasa_command(*args), cwd=REPO, env=rasa_environment(load_settings(REPO)), capture_output=True, text=True
    )


def test_conversation_stories_pass(rasa_model, tmp_path, figures):
    stories = yaml.safe_load((REPO / "tests/test_stories.yml").read_text("utf-8"))["stories"]
    assert len(stories) >= 15
    result = rasa(
        "test", "core", "--model", str(rasa_model), "--stories", "tests/test_stories.yml",
        "--out", str(tmp_path), "--fail-on-prediction-errors",
    )  # fmt: skip
    failed = (tmp_path / "failed_test_stories.yml").read_text("utf-8") if (tmp_path / "failed_test_stories.yml").exists() else ""
    assert result.returncode == 0, f"{failed}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    report = json.loads((tmp_path / "story_report.json").read_text("utf-8"))
    assert report["conversation_accuracy"]["accuracy"] == 1.0
    figures["rasa test core"] = f"{len(stories)} stories, conversation accuracy {report['conversation_accuracy']['accuracy']:.2f}"


def test_intents_on_the_held_out_nlu_set(rasa_model, tmp_path, figures):
    result = rasa("test", "nlu", "--model", str(rasa_model), "--nlu", "tests/nlu/test_nlu.yml", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "intent_report.json").read_text("utf-8"))
    macro_f1 = report["macro avg"]["f1-score"]
    figures["rasa test nlu"] = (
        f"intent macro-F1 {macro_f1:.3f}, accuracy {report['accuracy']:.3f} on {report['macro avg']['support']} held-out examples"
    )
    assert macro_f1 >= MIN_MACRO_F1, json.dumps({k: v for k, v in report.items() if isinstance(v, dict)}, indent=1)


def test_the_nlu_test_set_is_held_out():
    from rasa.shared.nlu.training_data.loading import load_data

    def texts(path: Path) -> set[str]:
        return {" ".join(m.get("text").lower().split()) for m in load_data(str(path)).intent_examples}

    test = texts(REPO / "tests/nlu/test_nlu.yml")
    assert len(test) >= 300
    assert not test & texts(REPO / "data/nlu")
