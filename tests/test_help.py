"""--help that explains: every command of both tools listed with a whole summary (none cut off
with '...'), and options whose help fits the command they are on."""
from __future__ import annotations

import click

from tsn_prep.cli import main as prep
from tsn_train.cli import main as train

from .conftest import cli, train_cli


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((prefix + name, cmd))
        if isinstance(cmd, click.Group):
            out += commands(cmd, prefix + name + " ")
    return out


def test_every_command_summary_is_whole():
    for tool, group in (("tsn-prep", prep), ("tsn-train", train)):
        for name, cmd in commands(group):
            summary = cmd.get_short_help_str(limit=80)
            assert summary and not summary.endswith("...") and len(summary) <= 60, (tool, name, summary)
    listed = cli("--help").output.split("Commands:")[1]
    assert "..." not in listed and "extract-frames  Extract RGB frames of VIDEOS into the store OUT." in listed
    assert "..." not in train_cli("--help").output.split("Commands:")[1]
    assert "..." not in train_cli("lists", "--help").output.split("Commands:")[1]


def test_extract_frames_workers_say_nothing_of_flow():
    assert "solver" not in cli("extract-frames", "--help").output
    assert "one solver per GPU" in " ".join(cli("extract-flow", "--help").output.split())


def test_command_functions_take_few_parameters():
    """Options are grouped into the records that own them (ExtractJob, TVL1Params, FitConfig...)."""
    import inspect

    for tool, group in (("tsn-prep", prep), ("tsn-train", train)):
        for name, cmd in commands(group):
            if cmd.callback is not None:
                taken = inspect.signature(inspect.unwrap(cmd.callback)).parameters
                assert len(taken) <= 12, (tool, name, list(taken))
