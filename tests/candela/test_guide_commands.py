"""The commands that docs/writing-a-strategy.md shows are commands the CLI accepts."""

from __future__ import annotations

import shlex

from candela.cli.app import build_parser


def guide_commands(repo_root) -> list[str]:
    """The ``candela ...`` lines of the guide's shell blocks (fences without a language)."""
    lines = (repo_root / "docs" / "writing-a-strategy.md").read_text(encoding="utf-8").splitlines()
    commands, fence, shell = [], False, False
    for line in lines:
        if line.startswith("```"):
            fence, shell = not fence, not fence and line.strip() == "```"
            continue
        if shell:
            commands.append(line)
    text = "\n".join(commands).replace("\\\n", " ")
    return [
        line.removeprefix("$ ").split("  #")[0].strip()
        for line in text.splitlines()
        if line.removeprefix("$ ").startswith("candela ")
    ]


def test_every_command_of_the_guide_parses(repo_root):
    commands = guide_commands(repo_root)
    assert len(commands) >= 8
    for command in commands:
        arguments = build_parser().parse_args(shlex.split(command)[1:])
        assert callable(arguments.handler), command
