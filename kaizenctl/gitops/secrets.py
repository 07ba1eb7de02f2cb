"""Keeping ``${VAR}`` values out of saved plans, and getting them back at apply time.

A saved plan is a CI artifact: it is uploaded, downloaded and read by people
who must not see secrets. So a value that came from ``${VAR}`` substitution is
never written. The file holds, per such value:

- the template as written in the manifest (``Bearer ${API_TOKEN}``) — no
  secret, it is in Git already;
- a salted scrypt digest of the resolved value.

Every occurrence of the value in the plan is replaced by a placeholder
``{"$kaizenctl_secret": "<id>"}``. At apply time the template is resolved
again from the environment, the digest must match (so apply sends exactly the
value that was planned, or refuses), and the placeholders are filled in.
scrypt rather than a bare hash because secrets are often short enough to
guess from a fast digest.

The templates are read back from the manifest files themselves, at the exact
position the loader recorded for each sensitive value; a value read from
standard input has no file to read back, so such plans cannot be saved.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kaizenctl.errors import UsageError
from kaizenctl.manifests.models import Resource

# The manifest loader's own substitution grammar: one definition, shared.
from kaizenctl.manifests.source import _REFERENCE, _SUBSTITUTION
from kaizenctl.redact import register_secret

SECRET_MARKER = "$kaizenctl_secret"

# scrypt cost: ~16 MiB and tens of milliseconds per value; plans hold few secrets.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
# Values this short are not registered as secrets by kaizenctl.redact either.
MIN_LEAK_LENGTH = 4

ValueType = Literal["str", "int", "float", "bool", "null"]
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SealedSecret(BaseModel):
    """A sensitive value as a saved plan stores it: how to get it back, and how to check it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    ref: str
    path: str
    template: str
    variables: tuple[str, ...]
    value_type: ValueType
    salt: str
    scrypt: str


def _type_name(value: Any) -> ValueType:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def _digest(value: Any, salt: bytes) -> str:
    from kaizenctl.gitops.fingerprint import canonical_json

    return hashlib.scrypt(
        canonical_json(value).encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    ).hex()


@cache
def _templates_in_file(file: str, mtime_ns: int) -> dict[tuple[int, int], str]:
    """(line, column) of every string scalar holding ``${`` -> its text as written."""
    found: dict[tuple[int, int], str] = {}
    text = Path(file).read_text(encoding="utf-8")
    stack: list[Node] = [node for node in yaml.compose_all(text, Loader=_Loader) if node]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            if "${" in node.value:
                found[(node.start_mark.line + 1, node.start_mark.column + 1)] = node.value
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return found


def template_of(resource: Resource, path: str) -> str | None:
    """The ``${VAR}`` template that produced ``resource``'s value at spec ``path``."""
    location = resource.locations.get(path)
    if location is None:
        return None
    try:
        mtime = os.stat(location.file).st_mtime_ns
        return _templates_in_file(location.file, mtime).get((location.line, location.column))
    except (OSError, yaml.YAMLError):
        return None


_PATH_PART = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def value_at(tree: Any, path: str) -> Any:
    """The value at a loader path like ``nodes[0].config.api_key``; KeyError when absent."""
    for match in _PATH_PART.finditer(path):
        key, index = match.group(1), match.group(2)
        if index is not None:
            if not isinstance(tree, list) or int(index) >= len(tree):
                raise KeyError(path)
            tree = tree[int(index)]
        else:
            if not isinstance(tree, dict) or key not in tree:
                raise KeyError(path)
            tree = tree[key]
    return tree


def set_at(tree: Any, path: str, value: Any) -> None:
    parts = list(_PATH_PART.finditer(path))
    parent = value_at(tree, path[: parts[-1].start()]) if len(parts) > 1 else tree
    last = parts[-1]
    if last.group(2) is not None:
        parent[int(last.group(2))] = value
    else:
        parent[last.group(1)] = value


def variables_of(template: str) -> tuple[str, ...]:
    names = []
    for match in _SUBSTITUTION.finditer(template):
        if match.group(1) is not None:
            reference = _REFERENCE.fullmatch(match.group(1))
            if reference is not None and reference.group(1) not in names:
                names.append(reference.group(1))
    return tuple(names)


def resolve_template(template: str, environ: Mapping[str, str]) -> str:
    """Substitute as the manifest loader does (``${NAME}``, ``${NAME:-default}``, ``$${``)."""
    unset: list[str] = []

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "$${":
            return "${"
        reference = _REFERENCE.fullmatch(match.group(1) or "")
        if reference is None:
            return text
        name, default = reference.group(1), reference.group(2)
        value = environ.get(name)
        if default is not None and not value:
            value = default
        if value is None:
            unset.append(name)
            return text
        return value

    text = _SUBSTITUTION.sub(replace, template)
    if unset:
        raise KeyError(", ".join(unset))
    return text


def _typed(text: str, value_type: ValueType) -> Any:
    """The value a plain scalar ``text`` becomes, as the loader types ``${MAX_TOKENS}``."""
    if value_type == "str":
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value


def seal(resources: list[Resource]) -> tuple[list[SealedSecret], dict[str, Any]]:
    """Seal every sensitive value of ``resources``; returns the records and id -> value.

    Raises ``UsageError`` when a value's template cannot be read back (standard input).
    """
    sealed: list[SealedSecret] = []
    values: dict[str, Any] = {}
    problems: list[str] = []
    for resource in resources:
        if not resource.sensitive_paths:
            continue
        spec = resource.spec.model_dump(mode="json", by_alias=True)
        for path in sorted(resource.sensitive_paths):
            template = template_of(resource, path)
            try:
                value = value_at(spec, path)
            except KeyError:
                template = None
            if template is None:
                problems.append(
                    f"{resource.location_of(path)}: {resource.ref} spec.{path} came from "
                    "${VAR} substitution, and its template cannot be read back from a file"
                )
                continue
            salt = secrets.token_bytes(16)
            secret_id = f"s{len(sealed) + 1}"
            sealed.append(
                SealedSecret(
                    id=secret_id,
                    ref=resource.ref,
                    path=path,
                    template=template,
                    variables=variables_of(template),
                    value_type=_type_name(value),
                    salt=salt.hex(),
                    scrypt=_digest(value, salt),
                )
            )
            values[secret_id] = value
    if problems:
        raise UsageError(
            "cannot save the plan: a saved plan never holds a ${VAR} value in clear, and "
            "re-reads its template at apply time; load the manifests from files, not "
            "standard input:\n" + "\n".join(f"  {p}" for p in problems)
        )
    return sealed, values


def unseal(sealed: list[SealedSecret], environ: Mapping[str, str]) -> dict[str, Any]:
    """Resolve every template from ``environ``; ``UsageError`` unless each matches its digest."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for record in sealed:
        where = f"{record.ref} spec.{record.path} ({record.template})"
        try:
            text = resolve_template(record.template, environ)
        except KeyError as error:
            problems.append(f"{where}: environment variable {error.args[0]} is not set")
            continue
        value = _typed(text, record.value_type)
        digest = _digest(value, bytes.fromhex(record.salt))
        if _type_name(value) != record.value_type or not hmac.compare_digest(digest, record.scrypt):
            problems.append(f"{where}: the value differs from the one the plan was made with")
            continue
        register_secret(text)
        values[record.id] = value
    if problems:
        raise UsageError(
            "refusing to apply the saved plan; nothing was changed:\n"
            + "\n".join(f"  {p}" for p in problems)
        )
    return values


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def mask_tree(tree: Any, values: dict[str, Any]) -> Any:
    """``tree`` with every leaf equal to a sealed value replaced by its placeholder."""
    if isinstance(tree, dict):
        return {key: mask_tree(item, values) for key, item in tree.items()}
    if isinstance(tree, list):
        return [mask_tree(item, values) for item in tree]
    for secret_id, value in values.items():
        # Any leaf equal to a secret is replaced, even one that was not written with ${VAR}:
        # it comes back as the same value, so the plan is unchanged and nothing leaks.
        if value is not None and _same(tree, value):
            return {SECRET_MARKER: secret_id}
    return tree


def restore_tree(tree: Any, values: dict[str, Any]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {SECRET_MARKER}:
            secret_id = tree[SECRET_MARKER]
            if secret_id not in values:
                raise UsageError(f"saved plan refers to an unknown secret {secret_id!r}")
            return values[secret_id]
        return {key: restore_tree(item, values) for key, item in tree.items()}
    if isinstance(tree, list):
        return [restore_tree(item, values) for item in tree]
    return tree


def clear_texts(
    sealed: list[SealedSecret], values: dict[str, Any], environ: Mapping[str, str]
) -> dict[str, str]:
    """Text that must not appear anywhere in a saved plan -> what to call it in an error."""
    texts: dict[str, str] = {}
    for record in sealed:
        value = values[record.id]
        label = f"the value of {record.template} ({record.ref} spec.{record.path})"
        if isinstance(value, str) and len(value) >= MIN_LEAK_LENGTH:
            texts[value] = label
        for name in record.variables:
            variable = environ.get(name)
            if variable and len(variable) >= MIN_LEAK_LENGTH:
                texts.setdefault(variable, f"the value of ${{{name}}} ({record.ref})")
    return texts
