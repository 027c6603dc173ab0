"""`Templates`: a step setting that holds a list of ``{placeholder}`` templates (cache keys to
tombstone, say), for the cache and accounts plugins and any other plugin's config.

cattrs would structure ``keys = "user:{id}"`` into a tuple of one-character strings, since a
string is a sequence; the hook registered here refuses anything but a list of strings.
"""

from __future__ import annotations

from typing import Any, NewType

from app.converter import converter
from app.pipeline.template import check_template

Templates = NewType("Templates", tuple[str, ...])


def _structure_templates(value: Any, _type: Any) -> Templates:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        msg = f"expected a list of key templates such as [\"user:{{id}}\"], got {value!r}"
        raise TypeError(msg)
    return Templates(tuple(value))


converter.register_structure_hook(Templates, _structure_templates)


def check_templates(inst: object, attribute: Any, value: Templates) -> None:
    """An attrs validator: every template of `value` parses."""
    for template in value:
        check_template(inst, attribute, template)
