"""A task's parameters as Dash controls, and reading what was typed back.

Each control is drawn from the parameter's `ParamField` (its kind, bounds, choices
and default), the same description the HTML form and the command line read; the
values go back through `TaskDefinition.validate(from_text=True)`, so a page never
checks a value itself and every message is the definition's.

Reading: the run callback gets the form's container (`run-form`) as its state.
Dash keeps every prop a user changed in the layout it sends, so the container's
`children` carry each control's current value under its id; the callback picks the
ids it knows and ignores the rest. This keeps the contract's plain ids
(`param-<name>`) while one callback serves every task's form.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dash import dcc, html

from myapp.dashboard import ids
from myapp.tasks import ParamField, TaskDefinition

# The form a page carries (`run-page`'s "form"): the main page's fixed fields, or
# the fields generated from a task's declaration.
MAIN_FORM = "main"
TASK_FORM = "task"
# A form's tree is walked at most this far (the renderer sends a few dozen nodes).
MAX_FORM_NODES = 2000
# What a control shows as its value when it was not changed: the prop Dash sends.
_VALUE_PROP = {"date": "date"}


@dataclass(frozen=True)
class FormField:
    """Where one parameter is typed and where its message goes."""

    name: str
    control: str
    error: str
    kind: str = "string"
    multiple: bool = False
    # Shown before the field's message ("Count must be at most 5"); the main page
    # shows the message alone under its input.
    label: str = ""

    def message(self, text: str) -> str:
        return f"{self.label} {text}" if self.label and text else text


def fields_of(definition: TaskDefinition, form: str) -> tuple[FormField, ...]:
    """The fields a page of `form` shows for `definition`."""
    if form == MAIN_FORM:
        return (
            FormField("rows", ids.ROWS_INPUT, ids.ROWS_ERROR, "integer"),
            FormField("seconds", ids.SECONDS_INPUT, ids.SECONDS_ERROR, "number"),
        )
    return tuple(
        FormField(
            f.name,
            ids.param_id(f.name),
            ids.param_error_id(f.name),
            f.kind,
            f.multiple,
            f.label,
        )
        for f in definition.fields
    )


# -- drawing ----------------------------------------------------------------------


def form_controls(definition: TaskDefinition, *, disabled: bool) -> list[html.Div]:
    """One labelled control per parameter, with its hint and its message line."""
    return [_field(spec, disabled) for spec in definition.fields]


def _field(spec: ParamField, disabled: bool) -> html.Div:
    control_id = ids.param_id(spec.name)
    # A checkbox carries its own label.
    label = None
    if not (spec.kind == "bool" and not spec.multiple):
        label = html.Label(spec.label, htmlFor=control_id)
    return html.Div(
        className="field",
        children=[
            label,
            control(spec, disabled=disabled),
            html.Small(spec.hint, className="hint muted"),
            html.Div(
                id=ids.param_error_id(spec.name), className="field-error", role="alert"
            ),
        ],
    )


def control(spec: ParamField, *, disabled: bool = False) -> Any:
    """The control of one parameter, of its kind, showing its default."""
    control_id = ids.param_id(spec.name)
    if spec.kind == "bool" and not spec.multiple:
        # Dash's Checklist has no `disabled` of its own: each option has one.
        return dcc.Checklist(
            id=control_id,
            options=[{"label": spec.label, "value": "true", "disabled": disabled}],
            value=["true"] if spec.default is True else [],
            className="check",
            inputStyle={"width": "auto", "marginRight": ".4rem"},
        )
    if spec.kind == "choice":
        # Choices are their text ("1" of Literal[1, 2, 3]): so is the default.
        default = spec.default
        if isinstance(default, list):
            default = [spec.text(v) for v in default] or None
        elif default is not None:
            default = spec.text(default)
        return dcc.Dropdown(
            id=control_id,
            options=[{"label": c, "value": c} for c in spec.choices],
            value=default,
            multi=spec.multiple,
            clearable=spec.multiple or spec.nullable or not spec.required,
            placeholder="none chosen" if spec.multiple or spec.nullable else "choose…",
            disabled=disabled,
        )
    if spec.kind == "date" and not spec.multiple:
        return dcc.DatePickerSingle(
            id=control_id,
            date=spec.default,
            display_format="YYYY-MM-DD",
            clearable=not spec.required,
            disabled=disabled,
        )
    numeric = spec.kind in ("integer", "number") and not spec.multiple
    placeholder = {"datetime": "YYYY-MM-DDTHH:MM", "date": "YYYY-MM-DD"}.get(
        spec.kind, ""
    )
    if spec.multiple:
        placeholder = "a, b, …"
    # Text even for numbers: the server sees what was typed and answers with the
    # field's message, where a number input would silently empty "1,5".
    return dcc.Input(
        id=control_id,
        type="text",
        inputMode=("numeric" if spec.kind == "integer" else "decimal")
        if numeric
        else None,
        value=spec.text(spec.default) if spec.default not in (None, []) else "",
        placeholder=placeholder or None,
        debounce=False,
        autoComplete="off",
        maxLength=spec.max_length if spec.kind == "string" else None,
        disabled=disabled,
    )


# -- reading ----------------------------------------------------------------------


def read_form(tree: Any, fields: tuple[FormField, ...]) -> dict[str, Any]:
    """What the form's controls hold, as `validate(from_text=True)` reads it.

    `tree` is the `children` of the form's container as the browser sent it; any
    JSON may arrive, so a value of an unexpected shape is passed on as text and
    the definition answers with the field's message. Untouched or empty
    controls are left out: the definition's default applies.
    """
    by_control = {f.control: f for f in fields}
    raw: dict[str, Any] = {}
    for props in _component_props(tree):
        spec = by_control.get(props.get("id"))  # type: ignore[arg-type]
        if spec is None or spec.name in raw:
            continue
        value = props.get(_VALUE_PROP.get(spec.kind, "value"))
        if spec.kind == "date" and not spec.multiple and "date" not in props:
            value = props.get("value")
        typed = _typed(value, spec)
        if typed is not None:
            raw[spec.name] = typed
    return raw


def _typed(value: Any, spec: FormField) -> Any:
    if value is None:
        return None
    if spec.kind == "bool" and not spec.multiple:
        # A checklist's value is the list of ticked options.
        return "true" in value if isinstance(value, list) else _text(value)
    if spec.multiple and isinstance(value, list):
        items = [_text(v) for v in value]
        return items or None
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _component_props(tree: Any) -> Iterator[Mapping[str, Any]]:
    """The props of every component in a serialized layout tree, depth first,
    stopping after MAX_FORM_NODES nodes."""
    stack = [tree]
    seen = 0
    while stack and seen < MAX_FORM_NODES:
        node = stack.pop()
        seen += 1
        if isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            props = node.get("props")
            if isinstance(props, dict):
                if isinstance(props.get("id"), str):
                    yield props
                stack.append(props.get("children"))
