"""One settings table (assistant.settings.SETTINGS) feeds the Settings defaults, the environment, the
CLI flags and README.md's settings table; these tests fail when any of them drifts from it."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest

from assistant.answer import LearnedAnswerer
from assistant.answer_rules import DEFAULT_THRESHOLD, RuleAnswerer
from assistant.cli import build_parser
from assistant.commands import settings_from_args
from assistant.settings import BY_NAME, EVERY_COMMAND, SETTINGS, Settings, markdown_table, with_table
from assistant.verify import Verifier

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_table_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    assert with_table(text) == text, (
        "README.md's settings table differs from assistant/settings.py: "
        "run `.venv/bin/python -m assistant.settings --readme README.md`")
    assert markdown_table() in text


def test_every_row_is_complete_and_its_default_has_its_type() -> None:
    defaults = Settings()
    assert len({row.env for row in SETTINGS}) == len(SETTINGS)
    for row in SETTINGS:
        assert row.help and "|" not in row.help, row.name
        assert row.type in (str, int, float, bool, Path), row.name
        value = getattr(defaults, row.name)
        assert type(value) is row.type or (row.type is Path and isinstance(value, Path)), row.name
        if row.default is not None:
            assert value == row.default, row.name
        if row.choices:
            assert value in row.choices, row.name
        assert bool(row.flag) == bool(row.commands), row.name
        if row.secret:
            assert f"{row.name}=" not in repr(defaults), row.name


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_cli_flags_and_their_help_come_from_the_table() -> None:
    parser = build_parser()
    commands = _subparsers(parser)
    for row in SETTINGS:
        if not row.flag:
            continue
        names = list(commands) if EVERY_COMMAND in row.commands else list(row.commands)
        targets = [parser, *(commands[name] for name in names)] if EVERY_COMMAND in row.commands else \
            [commands[name] for name in names]
        for target in targets:
            action = _options(target)[row.flag]
            assert action.dest == row.name and f"${row.env}" in (action.help or ""), (row.name, target.prog)
    # a flag that sets a setting is never typed by hand beside the table
    for name, sub in commands.items():
        for option, action in _options(sub).items():
            if action.dest in BY_NAME and option.startswith("--"):
                assert BY_NAME[action.dest].flag == option, (name, option)


def test_flags_and_environment_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for row in SETTINGS:
        monkeypatch.delenv(row.env, raising=False)
    monkeypatch.setenv("ASSISTANT_ALLOWED_ORIGINS", "https://env.example.com")
    monkeypatch.setenv("ASSISTANT_API_KEY", "from-env")
    monkeypatch.setenv("ASSISTANT_ANSWER_PASSAGES", "12")
    parser = build_parser()
    args = parser.parse_args(["serve", "--index-dir", "/tmp/x", "--frame-ancestors", "self",
                              "--frame-ancestors", "https://portal.example.com", "--backend", "openai"])
    settings = settings_from_args(args)
    assert settings.index_dir == Path("/tmp/x") and settings.backend == "openai"
    assert settings.frame_ancestors == "self,https://portal.example.com"
    assert settings.allowed_origins == "https://env.example.com" and settings.api_key == "from-env"
    assert settings.answer_passages == 12
    assert "from-env" not in repr(settings)
    args = parser.parse_args(["ingest", "docs", "--chunk-tokens", "99", "--embedding-model", "m"])
    settings = settings_from_args(args)
    assert (settings.chunk_tokens, settings.chunk_overlap, settings.model) == (99, 32, "m")
    monkeypatch.setenv("ASSISTANT_TOP_K", "seven")
    with pytest.raises(ValueError, match="ASSISTANT_TOP_K='seven' is not a int"):
        Settings.from_env()


def _default(function: object, name: str) -> object:
    return inspect.signature(function).parameters[name].default  # type: ignore[arg-type]


def test_constructor_defaults_equal_the_settings() -> None:
    """The answerers and the verifier, built without arguments, behave as the settings say."""
    settings = Settings()
    assert _default(RuleAnswerer, "max_sentences") == settings.max_answer_sentences
    assert _default(LearnedAnswerer, "max_sentences") == settings.max_answer_sentences
    assert _default(Verifier, "threshold") == settings.verify_threshold
    assert RuleAnswerer(settings.abstain_threshold).abstain_threshold == DEFAULT_THRESHOLD
    assert f"`rules`: {DEFAULT_THRESHOLD}" in BY_NAME["abstain_threshold"].help
