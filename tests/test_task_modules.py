"""A task module outside `myapp` (tests/task_kinds.py), named in TASK_MODULES, on
every surface: the API and its OpenAPI document, the HTML form, the command line,
another Celery client; its results, time limit and queue; and the modules and
declarations that must stop the app at start."""

from __future__ import annotations

import enum
from typing import Annotated

import pytest
from pydantic import Field

from myapp.tasks import RunContext, task
from myapp.tasks.declaration import declaration_of
from myapp.tasks.definition import TaskDeclarationError, TaskDefinition


class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


def test_parameters_named_like_schema_keywords_are_parameters():
    # The JSON Schema's own words (title, description, default) are also fine
    # parameter names; the schema keeps them as properties and the forms show them.
    @task
    def label(
        ctx: RunContext,
        title: Annotated[str, Field(min_length=2)],
        description: str = "",
        default: Shade = Shade.LIGHT,
    ) -> str:
        """Name something."""
        return title

    definition = TaskDefinition.build(declaration_of(label), {})
    properties = definition.schema()["properties"]
    assert list(properties) == ["title", "description", "default"]
    assert properties["title"] == {"minLength": 2, "maxLength": 1000, "type": "string"}
    assert properties["default"]["enum"] == ["light", "dark"]
    assert [f.name for f in definition.fields] == ["title", "description", "default"]
    assert definition.field("default").choices == ("light", "dark")
    assert definition.validate({"title": "ok", "default": "dark"}) == {
        "title": "ok",
        "description": "",
        "default": "dark",
    }


# -- modules and declarations that stop the app at start -------------------------


@pytest.mark.parametrize(
    ("module", "named"),
    [
        (
            "tests.bad_tasks.broken",
            [
                "module 'tests.bad_tasks.broken' cannot be imported",
                "RuntimeError: the report server is not configured",
            ],
        ),
        (
            "tests.bad_tasks.no_such_module",
            ["module 'tests.bad_tasks.no_such_module' cannot be imported"],
        ),
        (
            "tests.bad_tasks.dict_param",
            [
                "task configure (tests.bad_tasks.dict_param.configure)",
                "parameter 'options'",
            ],
        ),
        (
            "tests.bad_tasks.custom_type",
            [
                "task print_page (tests.bad_tasks.custom_type.print_page)",
                "parameter 'printer'",
            ],
        ),
        (
            "tests.bad_tasks.duplicate",
            [
                "two tasks are named 'generate_data'",
                "myapp.tasks.builtin.generate_data",
                "tests.bad_tasks.duplicate.make_rows",
            ],
        ),
        (
            "tests.bad_tasks.bad_default",
            [
                "task resize (tests.bad_tasks.bad_default.resize)",
                "parameter 'width'",
                "its default 8 is not a valid value",
            ],
        ),
    ],
)
def test_a_bad_task_module_stops_the_app_at_start_naming_it(make_app, module, named):
    with pytest.raises(TaskDeclarationError) as caught:
        make_app(TASK_MODULES=f"tests.task_kinds, {module}")
    message = str(caught.value)
    for words in named:
        assert words in message
