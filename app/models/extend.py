"""Models extended by plugins (`extend_models`): the registered class with more fields.

An extension is an attrs class whose fields are added to a registered model. The result is
a subclass of the model (so code holding the base class keeps working) carrying the same
name, so the OpenAPI and AsyncAPI documents, validation and projections see one model.
A model whose fields hold an extended one (a page's ``items: list[User]``) is made again
over the extended class (`retarget_model`), or the page would drop the added fields.

An added field needs a default: the data service's records, and every record stored before
the plugin came, do not have it, and a field they must carry made every answer a 502.
"""

from __future__ import annotations

import functools
import operator
import types
import typing
from collections.abc import Mapping
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
    required = sorted(field.name for field in attrs.fields(extension) if field.default is attrs.NOTHING)
    if required:
        msg = (f"{extension.__name__} adds {', '.join(required)} to {model.__name__} without a default: records "
               "stored without it (every one stored before) could not be read")
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


def retarget_model(model: type[Any], replaced: Mapping[type[Any], type[Any]]) -> type[Any]:
    """`model` with every field type naming a key of `replaced` made to name its value instead
    (``list[User]`` → ``list[ExtendedUser]``); `model` itself when none does. The same name,
    fields and order, a subclass of `model`."""
    try:
        hints = typing.get_type_hints(model)
    except (NameError, TypeError):  # hints this module cannot resolve name no extended model either
        return model
    retyped = {field.name: _substituted(hints[field.name], replaced) for field in attrs.fields(model)}
    if all(retyped[field.name] is hints[field.name] for field in attrs.fields(model)):
        return model
    namespace: dict[str, Any] = {
        "__annotations__": retyped,
        "__module__": model.__module__,
        "__qualname__": model.__qualname__,
        "__doc__": model.__doc__,
    }
    for field in attrs.fields(model):
        namespace[field.name] = attrs.field(
            default=field.default, validator=field.validator, repr=field.repr, eq=field.eq, order=field.order,
            hash=field.hash, init=field.init, metadata=field.metadata, converter=field.converter,
            kw_only=field.kw_only,
        )
    made = attrs.frozen(type(model.__name__, (model,), namespace))
    return typing.cast("type[Any]", made)


def _substituted(hint: Any, replaced: Mapping[type[Any], type[Any]]) -> Any:
    """`hint` with the classes of `replaced` swapped, rebuilt only where one was (else `hint` itself)."""
    if isinstance(hint, type) and hint in replaced:
        return replaced[hint]
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if not args or origin is None or origin is typing.Literal:
        return hint
    new_args = tuple(_substituted(arg, replaced) for arg in args)
    if all(new is old for new, old in zip(new_args, args, strict=True)):
        return hint
    if origin is typing.Union or origin is types.UnionType:
        return functools.reduce(operator.or_, new_args)
    if origin is typing.Annotated:
        return typing.Annotated[new_args[0], *args[1:]]
    return types.GenericAlias(origin, new_args)
