"""Typed op contracts: every step op declares pydantic ``Params``, ``Input`` and ``Output`` models.

- ``Params``: the JSON-able parameters a stage builds at compile time (checked by mypy and pydantic there).
- ``Input``: ``Params`` plus the input artifacts, as local paths inside the step.
- ``Output``: what the op returns — artifacts (paths) and output parameters.

A field typed ``Path`` / ``Path | None`` / ``dict[str, Path]`` is an artifact; every other field is a
parameter. dflow's ``OPIOSign`` is derived from the models, and :meth:`LamflowOP.execute` validates its
input against ``Input`` before :meth:`LamflowOP.run` sees it, so a renamed key fails at compile time or at
the start of a step with a message naming the field, never deep inside an op.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Dict, Generic, TypeVar, Union

from dflow.python import OP, OPIO, Artifact, FatalError, OPIOSign, Parameter
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from lamflow.ops.runtime import slots
from lamflow.ops.runtime.models import OpModel

InputT = TypeVar("InputT", bound=OpModel)
OutputT = TypeVar("OutputT", bound=OpModel)


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (annotation, False)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def artifact_kind(annotation: Any) -> str | None:
    """'path' or 'dict' when a field annotation is an artifact, else None."""
    inner, _ = _strip_optional(annotation)
    if inner is Path:
        return "path"
    if typing.get_origin(inner) is dict and typing.get_args(inner) == (str, Path):
        return "dict"
    return None


def artifact_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {n: f for n, f in model.model_fields.items() if artifact_kind(f.annotation) is not None}


def required_artifacts(model: type[BaseModel]) -> set[str]:
    return {
        n
        for n, f in artifact_fields(model).items()
        if not _strip_optional(f.annotation)[1] and f.is_required()
    }


def _dflow_type(annotation: Any) -> type:
    """The plain type dflow transports a parameter as (models and containers travel as JSON)."""
    inner, _ = _strip_optional(annotation)
    if typing.get_origin(inner) is typing.Literal:
        return type(typing.get_args(inner)[0])
    origin = typing.get_origin(inner) or inner
    if origin in (str, int, float, bool):
        return origin
    if origin is list or origin is tuple:
        return list
    return dict


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    value = field.default
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def signature(model: type[BaseModel]) -> dict[str, Any]:
    """dflow sign entries for every field of ``model``."""
    sign: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        kind = artifact_kind(field.annotation)
        optional = _strip_optional(field.annotation)[1] or not field.is_required()
        if kind == "path":
            sign[name] = Artifact(Path, optional=optional)
        elif kind == "dict":
            sign[name] = Artifact(Dict[str, Path], optional=optional)  # noqa: UP006 - dflow wants typing.Dict
        elif field.is_required():
            sign[name] = Parameter(_dflow_type(field.annotation))
        else:
            default = _default(field)
            sign[name] = Parameter(_dflow_type(field.annotation), default=default)
    return sign


def to_opio(output: BaseModel) -> dict[str, Any]:
    """An ``Output`` instance as dflow values: artifacts as paths, parameters as JSON-able data."""
    values: dict[str, Any] = {}
    for name, field in type(output).model_fields.items():
        value = getattr(output, name)
        if artifact_kind(field.annotation) is not None or value is None:
            values[name] = value
        else:
            values[name] = output.model_dump(mode="json", include={name})[name]
    return values


def describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(input)"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}: {first['msg']}{more}"


class LamflowOP(OP, Generic[InputT, OutputT]):
    """Base of every lamflow step op. Subclasses set ``name``, ``Params``, ``Input``, ``Output``, ``run``.

    ``name`` is the step kind users see (the op module's name and the prefix of its step keys).
    ``preload``: the modules ``run`` imports when it runs (kept out of the op module so that importing it
    stays cheap); the local engine's step launcher imports them once, before it forks the steps.
    """

    name: ClassVar[str]
    preload: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[OpModel]]
    Input: ClassVar[type[OpModel]]
    Output: ClassVar[type[OpModel]]

    @classmethod
    def get_input_sign(cls) -> OPIOSign:
        return OPIOSign(signature(cls.Input))

    @classmethod
    def get_output_sign(cls) -> OPIOSign:
        return OPIOSign(signature(cls.Output))

    @OP.exec_sign_check
    def execute(self, op_in: OPIO) -> OPIO:
        fields = type(self).Input.model_fields
        raw = {k: v for k, v in dict(op_in).items() if k in fields and v is not None}
        try:
            inp = type(self).Input.model_validate(raw)
        except ValidationError as exc:
            raise FatalError(f"{self.name}: invalid step input: {describe_validation_error(exc)}") from None
        with slots.held():  # the local engine's GPUs and cores for this step (nothing elsewhere)
            output = self.run(typing.cast(InputT, inp))
        return OPIO(to_opio(output))

    def run(self, inp: InputT) -> OutputT:  # pragma: no cover - abstract
        raise NotImplementedError
