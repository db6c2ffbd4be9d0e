"""The pydantic model of a task's parameters, made from its function's signature
(bounds from settings filled in), and its JSON Schema made self-contained."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, create_model

from myapp.tasks.declaration import Declaration, FromSetting
from myapp.tasks.errors import TaskDeclarationError

# Strings without a declared max_length are still bounded: they are stored with
# every run and shown in lists.
DEFAULT_MAX_LENGTH = 1000


def parameters_model(
    declaration: Declaration, config: Mapping[str, Any]
) -> type[BaseModel]:
    """The model of the declared function's parameters after the RunContext, with
    bounds read from `config`; TaskDeclarationError names what cannot be served."""
    where = declaration.where
    fields, settings_bounded = _fields(declaration, config)
    try:
        model = create_model(
            f"{declaration.name}_parameters",
            __config__=ConfigDict(
                extra="forbid",
                allow_inf_nan=False,
                str_max_length=DEFAULT_MAX_LENGTH,
                # A default above a bound an operator lowered (MAX_ROWS_PER_RUN) is
                # refused at the start, with the field's message, not in the worker.
                validate_default=True,
            ),
            **fields,
        )
        model.model_json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as exc:
        culprit = _undescribable(fields)
        which = f", parameter {culprit!r}" if culprit else ""
        raise TaskDeclarationError(
            f"task {declaration.name} ({where}){which}: its type cannot be "
            f"described: {str(exc).splitlines()[0]}"
        ) from None
    _check_defaults(declaration, model, skip=settings_bounded)
    return model


def _fields(
    declaration: Declaration, config: Mapping[str, Any]
) -> tuple[dict[str, Any], set[str]]:
    """(annotation, default) of each parameter after the RunContext, and the names
    of those bounded by a setting."""
    where = declaration.where
    try:
        hints = typing.get_type_hints(declaration.func, include_extras=True)
    except Exception as exc:  # a name the annotations use does not exist
        raise TaskDeclarationError(
            f"task {declaration.name} ({where}): its annotations cannot be read: {exc}"
        ) from None
    params = list(inspect.signature(declaration.func).parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TaskDeclarationError(
            f"task {declaration.name} ({where}): the first parameter must be the "
            "RunContext (ctx)"
        )
    fields: dict[str, Any] = {}
    settings_bounded: set[str] = set()
    for param in params[1:]:
        prefix = f"task {declaration.name} ({where}), parameter {param.name!r}"
        if param.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            raise TaskDeclarationError(
                f"{prefix}: *args and **kwargs cannot be described"
            )
        if param.name not in hints:
            raise TaskDeclarationError(f"{prefix}: has no type annotation")
        annotation = _settings_bounds(hints[param.name], config, prefix)
        if annotation is not hints[param.name]:
            settings_bounded.add(param.name)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    return fields, settings_bounded


def _undescribable(fields: Mapping[str, tuple[Any, Any]]) -> str | None:
    """The first parameter whose type pydantic cannot describe on its own (the
    model's error names the type, not the parameter)."""
    for name, (annotation, _) in fields.items():
        try:
            pydantic.TypeAdapter(annotation).json_schema()
        except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError):
            return name
    return None


def _settings_bounds(annotation: Any, config: Mapping[str, Any], prefix: str) -> Any:
    """`Annotated[..., FromSetting(le="X")]` with X's value from `config`."""
    if typing.get_origin(annotation) is not Annotated:
        return annotation
    base, *extras = typing.get_args(annotation)
    resolved: list[Any] = []
    for extra in extras:
        if not isinstance(extra, FromSetting):
            resolved.append(extra)
            continue
        bounds = {}
        for bound in ("ge", "le"):
            setting = getattr(extra, bound)
            if setting is None:
                continue
            if setting not in config:
                raise TaskDeclarationError(f"{prefix}: no setting named {setting!r}")
            bounds[bound] = config[setting]
        resolved.append(Field(**bounds))
    return Annotated[(base, *resolved)]


def _check_defaults(
    declaration: Declaration, model: type[BaseModel], skip: set[str]
) -> None:
    """A default the declaration itself refuses is a mistake in the code: stop at
    start. (One a setting's bound refuses, `skip`, is the operator's choice.)"""
    for name, info in model.model_fields.items():
        if info.is_required() or name in skip:
            continue
        try:
            pydantic.TypeAdapter(info.rebuild_annotation()).validate_python(
                info.default
            )
        except pydantic.ValidationError as exc:
            raise TaskDeclarationError(
                f"task {declaration.name} ({declaration.where}), parameter {name!r}: "
                f"its default {info.default!r} is not a valid value: "
                f"{exc.errors()[0]['msg']}"
            ) from None


def inline(
    node: Any, definitions: Mapping[str, Any], *, properties: bool = False
) -> Any:
    """`node` with every `$ref` to `$defs` replaced by its target, titles dropped
    (forms and OpenAPI documents read it as one piece). `properties`: `node` maps
    parameter names to their schemas."""
    if isinstance(node, list):
        return [inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return inline({**target, **rest}, definitions)
    if properties:
        # Parameter names, not schema keywords: a parameter may be called `title`
        # or `default` like any other.
        return {name: inline(value, definitions) for name, value in node.items()}
    return {
        key: value
        if key in ("default", "enum", "const")
        else inline(value, definitions, properties=key == "properties")
        for key, value in node.items()
        if key != "title"
    }
