"""Models extended by plugins (`extend_models`): the registered class with more fields.

An extension is an attrs class whose fields are added to a registered model. The result is
a subclass of the model (so code holding the base class keeps working) carrying the same
name, so the OpenAPI and AsyncAPI documents, validation and projections see one model.
"""

from __future__ import annotations

import typing
from typing import Any

import attrs


class ModelExtensionError(ValueError):
    """An extension that cannot be applied (a field the model already has)."""


def extend_model(model: type[Any], extension: type[Any]) -> type[Any]:
    """`model` with the fields of `extension` added (keyword-only, after its own).

    Raises:
        ModelExtensionError: the extension is not an attrs class, or it names a field the
            model already has.
    """
    if not attrs.has(extension):
        msg = f"the extension of {model.__name__} ({extension.__name__}) is not an attrs class"
        raise ModelExtensionError(msg)
    own = {field.name for field in attrs.fields(model)}
    clash = sorted(field.name for field in attrs.fields(extension) if field.name in own)
    if clash:
        msg = f"{extension.__name__} adds {', '.join(clash)} to {model.__name__}, which already has it"
        raise ModelExtensionError(msg)
    hints = typing.get_type_hints(extension)
    namespace: dict[str, Any] = {
        "__annotations__": {field.name: hints[field.name] for field in attrs.fields(extension)},
        "__module__": model.__module__,
        "__qualname__": model.__qualname__,
        "__doc__": model.__doc__,
    }
    for field in attrs.fields(extension):
        namespace[field.name] = attrs.field(default=field.default, metadata=field.metadata, kw_only=True)
    extended = attrs.frozen(kw_only=True)(type(model.__name__, (model,), namespace))
    return typing.cast("type[Any]", extended)
