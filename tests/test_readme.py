"""README.md stays true to the code.

The configuration reference in the README must be the output of
``storywatch config reference`` verbatim, and the Commands table must name every command
the CLI has, and only commands it has. Everything runs in-process through click's
CliRunner with ``--help`` or the reference generator: no model is loaded, no server started.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from storywatch.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

REGENERATE = (
    "README.md's configuration reference differs from the code. Regenerate it: replace the table under "
    "'## Configuration reference' in README.md with the output of `.venv/bin/storywatch config reference`."
)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CliRunner whose runs leave the process environment as they found it (the CLI's
    group callback sets defaults for HF_HUB_OFFLINE and TOKENIZERS_PARALLELISM)."""
    import os

    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", os.environ.get("TOKENIZERS_PARALLELISM", "false"))
    return CliRunner()


def section(title: str) -> str:
    """The text of the README's ``## title`` section, up to the next ``## `` heading."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def table_commands() -> list[tuple[str, ...]]:
    """The command path of each row of the Commands table: the words after ``storywatch``
    in the first cell, up to the first option or placeholder (``[--config F]``, ``ID``)."""
    commands = []
    for line in section("Commands").splitlines():
        cell = re.match(r"\| `storywatch ([^`]*)`", line)
        if cell is None:
            continue
        words: list[str] = []
        for token in cell.group(1).split():
            if not re.fullmatch(r"[a-z][a-z-]*", token):
                break
            words.append(token)
        commands.append(tuple(words))
    return commands


def cli_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every runnable command path: leaf commands, and groups that run without a subcommand."""
    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, click.Group):
            if command.invoke_without_command:
                yield path
            yield from cli_commands(command, path)
        else:
            yield path


def test_readme_holds_the_generated_config_reference(runner: CliRunner) -> None:
    result = runner.invoke(main, ["config", "reference"])
    assert result.exit_code == 0, result.output
    reference = result.output.rstrip("\n")
    assert reference.startswith("| key | type | default | notes |")
    documented = section("Configuration reference")
    if reference not in documented:
        table = documented[documented.find("| key |") :].rstrip("\n").splitlines()
        diff = list(difflib.unified_diff(table, reference.splitlines(), "README.md", "generated", lineterm="", n=0))
        shown = "\n".join(diff[:40]) + ("\n..." if len(diff) > 40 else "")
        pytest.fail(f"{REGENERATE}\n{shown}")


def test_every_command_in_the_table_exists(runner: CliRunner) -> None:
    commands = table_commands()
    assert len(commands) >= 10, f"the Commands table was not found or not parsed: {commands}"
    failures = []
    for path in commands:
        result = runner.invoke(main, [*path, "--help"])
        if result.exit_code != 0 or "Usage:" not in result.output:
            failures.append(f"storywatch {' '.join(path)} --help: exit {result.exit_code}: {result.output.strip()}")
    assert not failures, "README.md's Commands table names commands the CLI lacks:\n" + "\n".join(failures)


def test_the_table_lists_every_command() -> None:
    missing = sorted(set(cli_commands(main)) - set(table_commands()))
    assert not missing, "commands missing from README.md's Commands table: " + ", ".join(
        "storywatch " + " ".join(path) for path in missing
    )
