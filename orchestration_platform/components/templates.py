"""Template rendering for component YAML: only the strings that hold a `{{ ... }}` template are rendered."""

# No `from __future__ import annotations`: Dagster inspects the Resolver's annotations at runtime.

import copy
import os
import re
from ast import literal_eval, parse
from typing import Any

import dagster as dg


def render_templates(context: dg.ResolutionContext, value: Any) -> Any:
    """Render only the strings that hold a `{{ ... }}` template; every other value is kept as written.

    Dagster's default resolution compiles every string of the YAML as a Jinja template (~1 ms each: 100
    endpoints have ~2,000 strings, 20 datasets ~500) and turns strings such as "0.5" into numbers; this keeps
    both apart, and renders a template repeated across entries (the same `env(...)` URL in every dataset)
    once. The plain `{{ env('NAME', 'default') }}` form is rendered here exactly as Jinja's native rendering
    would (without importing Jinja); anything else goes to Dagster. A template that fails names its place.
    """
    return _render(context, value, (), {})


def _render(context: dg.ResolutionContext, value: Any, path: tuple, rendered: dict[str, Any]) -> Any:
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        if value not in rendered:
            for step in path:
                context = context.at_path(step)
            plain = _render_env_only(value)
            rendered[value] = plain[0] if plain else context.resolve_value(value)
        result = rendered[value]
        return copy.deepcopy(result) if isinstance(result, (dict, list)) else result
    if isinstance(value, dict):
        return {key: _render(context, item, (*path, key), rendered) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(context, item, (*path, index), rendered) for index, item in enumerate(value)]
    return value


# `{{ env('NAME') }}` or `{{ env('NAME', 'default') }}`, single or double quotes, no escapes in the default
_ENV = re.compile(r"""\{\{ *env\( *(['"])([A-Za-z_][A-Za-z0-9_]*)\1 *(?:, *(['"])([^'"\\\n]*)\3 *)?\) *\}\}""")


def _render_env_only(value: str) -> tuple[Any] | None:
    """(rendered,) when `value` is literal text and plain `env(...)` templates only, None otherwise.

    The same result as Jinja's NativeTemplate: the pieces joined, then read as a Python literal when they
    form one ("48" -> 48), else kept as the string. A variable that is unset without a default returns None
    (Dagster then raises its own error naming it)."""
    pieces, position = [], 0
    for match in _ENV.finditer(value):
        pieces.append(value[position:match.start()])
        name, default = match.group(2), match.group(4)
        found = os.environ.get(name, default)
        if found is None:
            return None
        pieces.append(found)
        position = match.end()
    pieces.append(value[position:])
    literal_text = pieces[::2]
    if position == 0 or "\r" in value or value.endswith("\n") or any(mark in text for text in literal_text
                                                      for mark in ("{{", "{%", "{#")):
        return None
    raw = "".join(pieces)
    try:
        return (literal_eval(parse(raw, mode="eval")),)
    except (ValueError, SyntaxError, MemoryError):
        return (raw,)


TEMPLATES_ONLY = dg.Resolver(render_templates, inject_before_resolve=False)  # strings too: rendered above
