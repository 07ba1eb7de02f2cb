"""Refuse, at plan, what the server cannot hold — at the manifest's file and line.

The server's ``Capabilities`` (``kaizenctl.api.capabilities``) say which kinds
and field values it can hold. A manifest breaking one of them is a plan error
naming file, line, field and reason, raised before anything is read or written;
nothing is ever dropped silently. This module reads the table only: it never
asks which dialect is in use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from kaizenctl.api.capabilities import Capabilities, FieldLimit
from kaizenctl.errors import PlanError
from kaizenctl.manifests.models import Resource


def _values(spec: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (concrete spec path, value) that ``path`` names; ``a[].b`` walks a list."""
    head, dot, rest = path.partition(".")
    if head.endswith("[]"):
        name = head[:-2]
        items = getattr(spec, name, None) or []
        for index, item in enumerate(items):
            if rest:
                for sub_path, value in _values(item, rest):
                    yield f"{name}[{index}].{sub_path}", value
            else:
                yield f"{name}[{index}]", item
        return
    if not hasattr(spec, head):
        return
    value = getattr(spec, head)
    if dot:
        yield from ((f"{head}.{p}", v) for p, v in _values(value, rest))
    else:
        yield head, value


def _is_empty(value: Any) -> bool:
    return value is None or value == {} or value == [] or value == ""


def _broken(limit: FieldLimit, value: Any) -> bool:
    if limit.required:
        return value is None
    if value is None:
        return False
    if limit.refused_if_set:
        return True
    if limit.must_be_empty:
        return not _is_empty(value)
    texts = value if isinstance(value, list) else [value]
    if limit.allowed_values is not None and any(v not in limit.allowed_values for v in texts):
        return True
    if any(_hashable(v) and v in limit.refused_values for v in texts):
        return True
    if limit.max_items is not None and isinstance(value, list) and len(value) > limit.max_items:
        return True
    strings = [v for v in texts if isinstance(v, str)]
    if limit.max_length is not None and any(len(v) > limit.max_length for v in strings):
        return True
    pattern = limit.pattern
    return pattern is not None and any(re.fullmatch(pattern, v) is None for v in strings)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _shown(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def refusals(resources: list[Resource], capabilities: Capabilities) -> list[str]:
    """One ``file:line:column: Kind/name: field: reason`` line per thing the server cannot hold."""
    problems: list[tuple[Any, str]] = []
    for resource in resources:
        if resource.kind not in capabilities.kinds:
            why = capabilities.refused_kinds.get(
                resource.kind, f"this server cannot hold a {resource.kind}"
            )
            problems.append((resource.source, f"{resource.ref}: {why}"))
            continue
        for limit in capabilities.limits:
            if limit.kind != resource.kind:
                continue
            for path, value in _values(resource.spec, limit.path):
                if not _broken(limit, value):
                    continue
                if limit.required:
                    what = "is required by this server"
                else:
                    what = f"{_shown(value)} cannot be held by this server"
                problems.append(
                    (resource.location_of(path), f"{resource.ref}: {path}: {what}: {limit.reason}")
                )
    problems.sort(key=lambda item: item[0])
    return [f"{where}: {message}" for where, message in problems]


def check_holdable(resources: list[Resource], capabilities: Capabilities) -> None:
    """Raise ``PlanError`` listing every refusal; nothing has been read or written yet."""
    found = refusals(resources, capabilities)
    if found:
        raise PlanError(
            "the server cannot hold these manifests as written; nothing was changed:\n"
            + "\n".join(f"  {line}" for line in found)
        )


def canonical(resources: list[Resource], capabilities: Capabilities) -> list[Resource]:
    """The manifests with every value equal to the server's default written as left out.

    A server reads its defaults back as "unset", so ``agent_type: chat`` and no
    ``agent_type`` must plan the same.
    """
    if not capabilities.defaults:
        return resources
    result = []
    for resource in resources:
        spec = resource.spec
        for (kind, path), default in capabilities.defaults.items():
            if kind == resource.kind:
                spec = _without_default(spec, path, default)
        result.append(resource if spec is resource.spec else replace(resource, spec=spec))
    return result


def _without_default(model: Any, path: str, default: Any) -> Any:
    head, _, rest = path.partition(".")
    if head.endswith("[]"):
        name = head[:-2]
        items = getattr(model, name, None)
        if not items:
            return model
        new_items = [_without_default(item, rest, default) for item in items]
        if all(new is old for new, old in zip(new_items, items, strict=True)):
            return model
        return model.model_copy(update={name: new_items})
    if getattr(model, head, None) == default:
        return model.model_copy(update={head: None})
    return model
