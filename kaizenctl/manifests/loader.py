"""Load manifests from files, folders or stdin into a validated ``ManifestSet``.

``load_manifests`` reads everything, validates every document against its
kind's model, then runs the per-spec and set-wide checks the kind registry
declares. It reports every problem in one ``ManifestError`` (never the first
only), each as ``file:line:column: Kind/name: field: message``. Nothing here
contacts a server.

``structure_only=True`` (``validate --structure-only``, the pre-commit hook)
reads no environment variable: a field written as ``${VAR}`` without a default
is checked only for what any value could make of it, everything else fully.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, get_args

from pydantic import BaseModel, ValidationError

from kaizenctl.errors import ManifestError
from kaizenctl.kinds import KIND_NAMES, KINDS, KindInfo
from kaizenctl.manifests.checks import did_you_mean
from kaizenctl.manifests.models import (
    API_VERSION,
    NAME_PATTERN,
    NODE_ID_PATTERN,
    Metadata,
    Resource,
    SourceLocation,
)
from kaizenctl.manifests.source import (
    Document,
    SourceProblem,
    expand_paths,
    parse_documents,
    read_source,
)
from kaizenctl.redact import redact

TOP_LEVEL_FIELDS = ("apiVersion", "kind", "metadata", "spec")

# Regex patterns are exact but unreadable in an error; say what they mean.
_PATTERN_MEANINGS = {
    NAME_PATTERN: "must be lowercase letters, digits and '-', starting and ending "
    "with a letter or digit",
    NODE_ID_PATTERN: "must be 1-64 characters of A-Z, a-z, 0-9, '_', '.' and '-'",
}


@dataclass(frozen=True)
class ManifestSet:
    """The desired state: every resource of the manifests, in file and document order."""

    resources: tuple[Resource, ...]
    _by_name: dict[tuple[str, str], Resource] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _by_identity: dict[tuple[str, str], Resource] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        for resource in self.resources:
            # setdefault: with duplicates (only possible when built by hand) the first wins.
            self._by_name.setdefault((resource.kind, resource.name), resource)
            info = KINDS.get(resource.kind)
            if info is not None:
                self._by_identity.setdefault((resource.kind, info.identity(resource)), resource)

    def of_kind(self, kind: str) -> list[Resource]:
        return [resource for resource in self.resources if resource.kind == kind]

    def get(self, kind: str, name: str) -> Resource | None:
        return self._by_name.get((kind, name))

    def find(self, kind: str, identity: str) -> Resource | None:
        """The resource of ``kind`` with this identity (its name, or e.g. pipeline/environment)."""
        return self._by_identity.get((kind, identity))

    def __len__(self) -> int:
        return len(self.resources)


@dataclass
class _Problems:
    """Problems in the order a reader meets them: by file as given, then line and column."""

    file_order: dict[str, int] = field(default_factory=dict)
    entries: list[tuple[tuple[int, int, int, int], str]] = field(default_factory=list)

    def add(self, location: SourceLocation | None, ref: str, path: str, message: str) -> None:
        parts = [str(location)] if location is not None else []
        parts += [part for part in (ref, path) if part]
        parts.append(message)
        if location is None:
            key = (-1, 0, 0, len(self.entries))
        else:
            order = self.file_order.get(location.file, len(self.file_order))
            key = (order, location.line, location.column, len(self.entries))
        self.entries.append((key, ": ".join(parts)))

    def add_source(self, problem: SourceProblem, ref: str = "") -> None:
        self.add(problem.location, ref, problem.path, problem.message)

    def sorted(self) -> list[str]:
        # Substituted values may reach a message through a reference name: mask them.
        return [redact(text) for _, text in sorted(self.entries)]


@dataclass
class _Loaded:
    """A validated resource with what the set-wide checks need to point at it."""

    resource: Resource
    name_location: SourceLocation
    # Structure only: spec paths (``nodes[0].agent``) whose value is an unresolved ${VAR}.
    templated: frozenset[str] = frozenset()

    def checks(self, path: str) -> bool:
        """Whether a problem at this spec path is about a value actually known."""
        return path not in self.templated


def load_manifests(
    paths: Sequence[str],
    *,
    stdin: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    structure_only: bool = False,
) -> ManifestSet:
    """Read, validate and cross-check manifests; raise ``ManifestError`` with every problem.

    With ``structure_only`` no ``${VAR}`` is resolved (see the module docstring);
    such a set is for checking only, never for planning.
    """
    environ = os.environ if environ is None else environ
    problems = _Problems()
    files, path_problems = expand_paths(paths)
    for problem in path_problems:
        problems.add_source(problem)
    loaded: list[_Loaded] = []
    # Every (kind, name) written, valid or not: a reference to an invalid resource is
    # not also reported as missing, since that second message would only mislead.
    declared: set[tuple[str, str]] = set()
    for name in files:
        display, text = read_source(name, stdin)
        problems.file_order.setdefault(display, len(problems.file_order))
        if isinstance(text, SourceProblem):
            problems.add_source(text)
            continue
        documents = 0
        for document in parse_documents(display, text, environ, structure_only=structure_only):
            documents += 1
            if isinstance(document, SourceProblem):
                problems.add_source(document)
                continue
            result = _validate_document(document, problems, declared)
            if result is not None:
                loaded.append(result)
        if documents == 0:
            # Ignoring it would drop, at the next apply --prune, whatever the file used to hold.
            problems.add(
                SourceLocation(display, 1, 1),
                "",
                "",
                "holds no manifest (it is empty or only comments); delete the file if its "
                "resources are meant to go, or restore its content",
            )
    manifest_set = ManifestSet(tuple(item.resource for item in loaded))
    _check_set(loaded, manifest_set, declared, problems)
    if problems.entries:
        raise ManifestError(problems.sorted())
    return manifest_set


def _validate_document(
    document: Document, problems: _Problems, declared: set[tuple[str, str]]
) -> _Loaded | None:
    """One document -> a Resource, or None after adding its problems."""
    before = len(problems.entries)
    value = document.value
    if not isinstance(value, dict):
        problems.add(
            document.source,
            "",
            "",
            "a manifest is a mapping with apiVersion, kind, metadata and spec",
        )
        return None
    kind = value.get("kind")
    info = KINDS.get(kind) if isinstance(kind, str) else None
    metadata = value.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    ref = f"{kind}/{name if isinstance(name, str) else '?'}" if info is not None else ""
    if info is not None and isinstance(name, str):
        declared.add((info.kind, name))

    for problem in document.problems:
        problems.add_source(problem, ref)
    for key in value:
        if key not in TOP_LEVEL_FIELDS:
            problems.add(
                document.key_locations.get(str(key), document.source),
                ref,
                "",
                f"unknown field '{key}'" + did_you_mean(str(key), TOP_LEVEL_FIELDS),
            )

    api_version = value.get("apiVersion")
    if api_version is None:
        problems.add(
            document.source, ref, "apiVersion", f"required field missing (write {API_VERSION})"
        )
    elif api_version != API_VERSION:
        problems.add(document.locations["apiVersion"], ref, "apiVersion", f"must be {API_VERSION}")

    if kind is None:
        problems.add(
            document.source, "", "kind", f"required field missing (one of {', '.join(KIND_NAMES)})"
        )
    elif info is None:
        problems.add(
            document.locations["kind"],
            "",
            "kind",
            f"unknown kind '{kind}'"
            + (did_you_mean(kind, KIND_NAMES) if isinstance(kind, str) else "")
            + f" (one of {', '.join(KIND_NAMES)})",
        )

    parsed_metadata = _validate_part(document, "metadata", Metadata, ref, problems)
    spec: BaseModel | None = None
    if info is not None:
        spec = _validate_part(document, "spec", info.spec_model, ref, problems)
    elif "spec" not in value:
        problems.add(document.source, ref, "spec", "required field missing")

    if len(problems.entries) > before or info is None:
        return None
    if spec is None:
        # Structure only: a ${VAR} stands where no value of its field's type could be
        # tried; nothing known is wrong, and this document's own rules go unchecked.
        return None
    assert isinstance(parsed_metadata, Metadata)
    resource = Resource(
        kind=info.kind,
        name=parsed_metadata.name,
        spec=spec,  # type: ignore[arg-type]  # KindInfo.spec_model is one of the Spec models
        annotations=dict(parsed_metadata.annotations),
        source=document.source,
        locations=document.locations.within("spec."),
        sensitive_paths=frozenset(
            path[len("spec.") :] for path in document.sensitive_paths if path.startswith("spec.")
        ),
    )
    templated = frozenset(
        path[len("spec.") :] for path in document.templated_paths if path.startswith("spec.")
    )
    loaded = _Loaded(resource, document.locations.get("metadata.name", document.source), templated)
    _run_spec_checks(info, loaded, problems)
    return loaded


def _validate_part(
    document: Document,
    part: str,
    model: type[BaseModel],
    ref: str,
    problems: _Problems,
) -> BaseModel | None:
    """Validate ``metadata`` or ``spec`` with its model, mapping errors back to the source."""
    value = document.value.get(part)
    if part not in document.value:
        problems.add(document.source, ref, part, "required field missing")
        return None
    if not isinstance(value, dict):
        problems.add(document.location_near(part), ref, part, "must be a mapping")
        return None
    try:
        return _validate_known(model, value, part, document.templated_paths)
    except ValidationError as error:
        # A value the reader already refused (say, .nan) is not also reported by the model.
        refused = {problem.path for problem in document.problems}
        for detail in error.errors(include_url=False):
            loc = detail["loc"]
            path = _path_of(part, loc)
            if path in refused or path in document.templated_paths:
                continue
            location, message = _describe(document, model, path, loc, detail)
            problems.add(location, ref, path, message)
        return None


def _path_of(part: str, loc: tuple[int | str, ...]) -> str:
    return part + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


# Values tried in place of an unresolved ${VAR} so the rest of a document can still be
# checked; tried in order until the field accepts one (an enum's first value comes first).
_STAND_INS: tuple[Any, ...] = (1, True, "latest", 0.5, "x")


def _validate_known(
    model: type[BaseModel], value: dict[str, Any], part: str, templated: set[str]
) -> BaseModel:
    """Validate ``value``; fields that hold an unresolved ${VAR} get stand-ins if they must.

    The stand-ins only let the model accept the document so its other fields and the
    set-wide rules are checked; errors at templated paths are never reported.
    """
    attempt = value
    tried: dict[tuple[int | str, ...], int] = {}
    while True:
        try:
            return model.model_validate(attempt)
        except ValidationError as error:
            unknown = [d for d in error.errors() if _path_of(part, d["loc"]) in templated]
            if not unknown or len(unknown) < len(error.errors()):
                raise
            if attempt is value:
                attempt = copy.deepcopy(value)
            for detail in unknown:
                loc = tuple(detail["loc"])
                count = tried.get(loc, 0)
                candidates = [*_allowed_literals(detail), *_STAND_INS]
                if count >= len(candidates):
                    raise
                tried[loc] = count + 1
                _put(attempt, loc, candidates[count])


def _allowed_literals(detail: Any) -> list[str]:
    if detail["type"] != "literal_error":
        return []
    return re.findall(r"'([^']*)'", str(detail.get("ctx", {}).get("expected", "")))[:1]


def _put(container: Any, loc: tuple[int | str, ...], value: Any) -> None:
    for key in loc[:-1]:
        container = container[key]
    container[loc[-1]] = value


def _describe(
    document: Document,
    model: type[BaseModel],
    path: str,
    loc: tuple[int | str, ...],
    detail: Any,
) -> tuple[SourceLocation, str]:
    """Where a pydantic error points and what to tell a person about it."""
    error_type = detail["type"]
    sensitive = path in document.sensitive_paths
    if error_type == "extra_forbidden":
        fields = _field_names(_model_at(model, loc[:-1]))
        location = document.key_locations.get(path) or document.location_near(path)
        return location, f"unknown field '{loc[-1]}'" + did_you_mean(str(loc[-1]), fields)
    if error_type == "missing":
        parent = path[: max(path.rfind("."), path.rfind("["))]
        location = document.key_locations.get(parent) or document.location_near(parent)
        return location, "required field missing"
    location = document.location_near(path)
    if error_type == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(detail.get("ctx", {}).get("expected", "")))
        message = f"must be one of {', '.join(allowed)}"
        given = detail.get("input")
        if isinstance(given, str) and not sensitive:
            message = f"'{given}' is not allowed; {message}" + did_you_mean(given, allowed)
        return location, message
    if error_type == "string_pattern_mismatch":
        pattern = str(detail.get("ctx", {}).get("pattern", ""))
        if pattern in _PATTERN_MEANINGS:
            return location, _PATTERN_MEANINGS[pattern]
    message = str(detail["msg"]).removeprefix("Value error, ")
    return location, message


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The nested model a pydantic ``loc`` (minus its last part) points into."""
    current = model
    for part in loc:
        if isinstance(part, int):
            continue
        found = None
        for field_name, field_info in current.model_fields.items():
            if (field_info.alias or field_name) == part:
                found = _find_model(field_info.annotation)
                break
        if found is None:
            return None
        current = found
    return current


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _find_model(argument)
        if found is not None:
            return found
    return None


def _field_names(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _run_spec_checks(info: KindInfo, loaded: _Loaded, problems: _Problems) -> None:
    resource = loaded.resource
    for check in info.checks:
        for path, message in check(resource.spec):
            if loaded.checks(path):
                problems.add(resource.location_of(path), resource.ref, f"spec.{path}", message)


def _check_set(
    loaded: list[_Loaded],
    manifest_set: ManifestSet,
    declared: set[tuple[str, str]],
    problems: _Problems,
) -> None:
    """Duplicates, references and the kinds' set-wide checks."""
    first_by_identity: dict[tuple[str, str], _Loaded] = {}
    first_by_name: dict[tuple[str, str], _Loaded] = {}
    for item in loaded:
        resource = item.resource
        info = KINDS[resource.kind]
        identity = info.identity(resource)
        first = first_by_identity.setdefault((resource.kind, identity), item)
        if first is not item:
            what = (
                f"another {resource.kind} for the same {info.identity_label} ({identity})"
                if info.identity_label
                else f"duplicate {resource.kind} '{resource.name}'"
            )
            problems.add(
                item.name_location,
                resource.ref,
                "metadata.name",
                f"{what}; first at {first.name_location}",
            )
            continue
        # Kinds identified otherwise (Deployment) still need unique names: `get` looks them up.
        first = first_by_name.setdefault((resource.kind, resource.name), item)
        if first is not item:
            problems.add(
                item.name_location,
                resource.ref,
                "metadata.name",
                f"duplicate {resource.kind} name '{resource.name}'; first at {first.name_location}",
            )

    names_by_kind: dict[str, list[str]] = {}
    for resource in manifest_set.resources:
        names_by_kind.setdefault(resource.kind, []).append(resource.name)
    for item in loaded:
        resource = item.resource
        info = KINDS[resource.kind]
        for reference in info.references:
            for path, name in reference.names(resource.spec):
                if (reference.kind, name) not in declared and item.checks(path):
                    problems.add(
                        resource.location_of(path),
                        resource.ref,
                        f"spec.{path}",
                        f"{reference.kind} '{name}' is not in the manifest set"
                        + did_you_mean(name, names_by_kind.get(reference.kind, [])),
                    )
        for set_check in info.set_checks:
            for path, message in set_check(resource, manifest_set):
                if item.checks(path):
                    problems.add(resource.location_of(path), resource.ref, f"spec.{path}", message)
