"""The task options, declared once in `TaskArgs` and given by `task_options`."""

import inspect
import re
from dataclasses import fields

import pytest
from typer.testing import CliRunner

from swarmflower.cli import app
from swarmflower.cli_options import InitSites, TaskArgs, task_options
from swarmflower.errors import ConfigError
from swarmflower.tasks import TaskSpec

TASK_OPTIONS = [f.name for f in fields(TaskArgs)]
REST = TASK_OPTIONS[2:]  # after --task and --sites


@task_options
def command(rounds: int = 1, *, task_args: TaskArgs, last: str = "x") -> TaskArgs:
    return task_args


def defaults(function) -> dict:
    return {n: p.default for n, p in inspect.signature(function).parameters.items()}


def test_the_signature_has_each_task_option_once_in_place_of_task_args():
    names = list(inspect.signature(command).parameters)
    assert names == ["task", "sites", "rounds", *REST, "last"]


def test_the_command_gets_one_task_args_and_its_own_options():
    got = command(**{**defaults(command), "lr": 0.5, "sites": 3})
    assert got == TaskArgs(lr=0.5, sites=3)


def test_task_args_make_the_task_spec():
    assert TaskArgs().spec() == TaskSpec()
    spec = TaskArgs(task="breast-cancer", sites=6, lr=0.1, local_steps=7).spec()
    assert (spec.task, spec.num_sites, spec.learning_rate) == ("breast-cancer", 6, 0.1)
    assert spec.local_steps == 7
    assert spec.options == ()  # csv options only when given


def test_a_csv_option_given_to_another_task_is_refused_by_name():
    with pytest.raises(ConfigError, match="positive"):
        TaskArgs(positive="yes").spec()


def test_an_override_changes_an_option_and_keeps_the_others():
    @task_options(sites=(InitSites, None))
    def init_like(out: str, *, task_args: TaskArgs) -> TaskArgs:
        return task_args

    params = inspect.signature(init_like).parameters
    assert list(params) == ["out", "task", "sites", *REST]
    assert params["sites"].default is None
    assert params["sites"].annotation is InitSites
    assert params["task"].default == "heart"


def test_a_command_without_task_args_or_with_a_task_option_is_refused():
    with pytest.raises(TypeError, match="TaskArgs"):
        task_options(lambda rounds=1: None)
    with pytest.raises(TypeError, match="seed"):

        @task_options
        def clash(seed: int = 0, *, task_args: TaskArgs) -> None: ...

    with pytest.raises(TypeError, match="override"):
        task_options(sitez=int)


def help_options(name: str) -> list[str]:
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.output)
    return re.findall(r"^│\s+(?:\*\s+)?--([a-z-]+)", text, flags=re.MULTILINE)


@pytest.mark.parametrize("name", ["compare", "simulate", "init"])
def test_help_lists_every_task_option_once(name):
    listed = help_options(name)
    for option in TASK_OPTIONS:
        assert listed.count(option.replace("_", "-")) == 1, (option, listed)
    assert listed[listed.index("task") + 1] == "sites"
    assert listed[-1] == "help"
