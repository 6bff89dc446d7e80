"""Template rendering for component YAML: only the strings that hold a `{{ ... }}` template are rendered."""

# No `from __future__ import annotations`: Dagster inspects the Resolver's annotations at runtime.

import copy
from typing import Any

import dagster as dg


def render_templates(context: dg.ResolutionContext, value: Any) -> Any:
    """Render only the strings that hold a `{{ ... }}` template; every other value is kept as written.

    Dagster's default resolution compiles every string of the YAML as a Jinja template (~1 ms each: 100
    endpoints have ~2,000 strings, 20 datasets ~500) and turns strings such as "0.5" into numbers; this keeps
    both apart, and renders a template repeated across entries (the same `env(...)` URL in every dataset)
    once. A template that fails names its place in the YAML.
    """
    return _render(context, value, (), {})


def _render(context: dg.ResolutionContext, value: Any, path: tuple, rendered: dict[str, Any]) -> Any:
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        if value not in rendered:
            for step in path:
                context = context.at_path(step)
            rendered[value] = context.resolve_value(value)
        result = rendered[value]
        return copy.deepcopy(result) if isinstance(result, (dict, list)) else result
    if isinstance(value, dict):
        return {key: _render(context, item, (*path, key), rendered) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(context, item, (*path, index), rendered) for index, item in enumerate(value)]
    return value


TEMPLATES_ONLY = dg.Resolver(render_templates)
