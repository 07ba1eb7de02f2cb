"""Reading manifest files into plain Python values that remember where each value was written.

PyYAML's constructors drop source positions, so documents are composed into
nodes (which carry marks) and turned into values here. Building values
ourselves is also where hostile input is bounded: alias expansion ("billion
laughs") is cut off by counting visited nodes, nesting by depth, files by size.
``${VAR}`` / ``${VAR:-default}`` substitution happens here too, because this is
the only place that still knows whether a scalar was written plain or quoted.
"""

from __future__ import annotations

import datetime
import errno
import math
import os
import re
import stat
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from kaizenctl.manifests.models import Positions, SourceLocation
from kaizenctl.redact import register_secret

MAX_FILE_BYTES = 10 * 1024 * 1024
# A real manifest has tens to hundreds of nodes; 100k leaves room for huge configs
# while refusing alias bombs long before they exhaust memory.
MAX_NODES_PER_DOCUMENT = 100_000
MAX_DEPTH = 100
STDIN_NAME = "<stdin>"
YAML_SUFFIXES = (".yaml", ".yml")

# The C loader is ~10x faster; the pure-Python one behaves the same, only slower.
if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Plain scalars (keys included) repeat across manifests: remember what each resolved to.
_RESOLVED_CACHE_LIMIT = 50_000


class _Loader(_BaseLoader):
    """The safe loader with its implicit-tag resolver memoised.

    Even the C loader calls back into PyYAML's Python resolver for every node:
    a regex scan per plain scalar plus two path-resolver hooks, about a third
    of the time to load a large set. The safe loader registers no path
    resolvers, so the hooks do nothing and a plain scalar's tag depends on its
    text alone.
    """

    _plain_tags: ClassVar[dict[str, str]] = {}

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0]:
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                if len(self._plain_tags) < _RESOLVED_CACHE_LIMIT:
                    self._plain_tags[value] = tag
            return tag
        resolved: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return resolved


# The overrides above are only right while nothing registers a path resolver.
assert not _Loader.yaml_path_resolvers

_YAML_TAG_PREFIX = "tag:yaml.org,2002:"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Scalar tags a manifest may hold; anything else (!!python/..., !custom) is refused.
_SCALAR_TAGS = frozenset(
    {
        _STR_TAG,
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:timestamp",
    }
)

# `$${` is a literal `${`; `${...}` a reference; a lone `${` an unclosed one.
_SUBSTITUTION = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_REFERENCE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)

_constructor = SafeConstructor()
_resolver = Resolver()
# (tag, text) -> value for non-string scalars; the values (int, float, bool, None, dates)
# are immutable, and the same few texts (true, 1024, 0.2) recur in every manifest.
_SCALAR_VALUES: dict[tuple[str, str], Any] = {}
_SCALAR_VALUES_LIMIT = 50_000


def _construct_scalar(tag: str, text: str) -> Any:
    """The value of a resolved non-string scalar, as SafeConstructor makes it.

    Called directly rather than through ``construct_object``, which would keep
    every node it ever saw in its ``constructed_objects`` cache.
    """
    key = (tag, text)
    try:
        return _SCALAR_VALUES[key]
    except KeyError:
        pass
    constructor = _constructor.yaml_constructors[tag]
    value = constructor(_constructor, ScalarNode(tag, text))
    if len(_SCALAR_VALUES) < _SCALAR_VALUES_LIMIT:
        _SCALAR_VALUES[key] = value
    return value


@dataclass(frozen=True)
class SourceProblem:
    """A problem found while reading: where, the document path it concerns (may be ""), what."""

    location: SourceLocation | None
    path: str
    message: str


@dataclass
class Document:
    """One YAML document as plain values, with the source position of every value."""

    value: Any
    source: SourceLocation
    # Full document paths (``spec.nodes[0].id``) -> where the value starts.
    locations: Positions = field(default_factory=lambda: Positions(""))
    # Full document paths of mapping entries -> where their key starts.
    key_locations: Positions = field(default_factory=lambda: Positions(""))
    # Full document paths whose value came from ${VAR} substitution.
    sensitive_paths: set[str] = field(default_factory=set)
    # Structure-only reading: full document paths still holding an unresolved ${VAR}.
    templated_paths: set[str] = field(default_factory=set)
    problems: list[SourceProblem] = field(default_factory=list)

    def location_near(self, path: str) -> SourceLocation:
        """Where ``path`` or, failing that, its nearest written parent is."""
        while path:
            if path in self.locations:
                return self.locations[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.locations.get("", self.source)


class _Refused(Exception):
    """A document passes a safety limit; it is refused whole."""


# What a JSON API can take as an integer: the server's 64-bit columns, and every common
# JSON parser's integers. A 40-digit max_tokens passed validate and failed at the server.
MAX_INTEGER = 2**63 - 1


def unsendable(value: Any) -> str | None:
    """Why a YAML scalar cannot be sent as JSON, or None. Refused here, at validate, with
    its line, rather than by the encoder mid-apply after other writes went through."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} cannot be sent: JSON has no NaN or infinity; write a number"
    if isinstance(value, int) and not -MAX_INTEGER - 1 <= value <= MAX_INTEGER:
        return "integer out of range: an API number must fit in 64 bits"
    if isinstance(value, datetime.date):
        return (
            f"a YAML date or time ({value.isoformat()}) cannot be sent as JSON; "
            "quote it to send it as text"
        )
    return None


def _short_tag(tag: str) -> str:
    """A tag as a person writes it: ``!!python/object`` rather than the resolved URI."""
    return "!!" + tag.removeprefix(_YAML_TAG_PREFIX) if tag.startswith(_YAML_TAG_PREFIX) else tag


def _mark(file: str, node: Node, *, end: bool = False) -> SourceLocation:
    mark = node.end_mark if end else node.start_mark
    return SourceLocation(file, mark.line + 1, mark.column + 1)


class _DocumentBuilder:
    """Turns one composed node tree into values, recording marks per path."""

    def __init__(
        self, file: str, environ: Mapping[str, str], *, structure_only: bool = False
    ) -> None:
        self.file = file
        # Structure only: no variable is read, so the result is the same on every machine.
        self.environ: Mapping[str, str] = {} if structure_only else environ
        self.structure_only = structure_only
        self.visited = 0
        # Collections being built right now: seeing one again means a recursive alias.
        self.active: set[int] = set()
        self.document = Document(
            value=None,
            source=SourceLocation(file, 1, 1),
            locations=Positions(file),
            key_locations=Positions(file),
        )
        # Bound once: these run for every value of every manifest.
        self._record_value = self.document.locations.record
        self._record_key = self.document.key_locations.record

    def build(self, node: Node) -> Document:
        self.document.source = _mark(self.file, node)
        self.document.value = self._value(node, "", 0, substitute=False)
        return self.document

    def _problem(self, location: SourceLocation, path: str, message: str) -> None:
        self.document.problems.append(SourceProblem(location, path, message))

    def _value(self, node: Node, path: str, depth: int, *, substitute: bool) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES_PER_DOCUMENT:
            raise _Refused(
                f"document refused: it expands to more than {MAX_NODES_PER_DOCUMENT:,} values "
                "(are aliases (*name) multiplying it?)"
            )
        self._record_value(path, node.start_mark)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path, substitute=substitute)
        if depth > MAX_DEPTH:
            raise _Refused(f"document refused: nested deeper than {MAX_DEPTH} levels")
        if id(node) in self.active:
            raise _Refused("document refused: an alias (*name) refers to a value that contains it")
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ_TAG:
                    self._problem(
                        _mark(self.file, node),
                        path,
                        f"unsupported YAML tag '{_short_tag(node.tag)}'",
                    )
                return [
                    self._value(child, f"{path}[{index}]", depth + 1, substitute=substitute)
                    for index, child in enumerate(node.value)
                ]
            assert isinstance(node, MappingNode)
            return self._mapping(node, path, depth, substitute=substitute)
        finally:
            self.active.discard(id(node))

    def _mapping(
        self,
        node: MappingNode,
        path: str,
        depth: int,
        *,
        substitute: bool,
    ) -> dict[Any, Any]:
        if node.tag != _MAP_TAG:
            self._problem(
                _mark(self.file, node), path, f"unsupported YAML tag '{_short_tag(node.tag)}'"
            )
        result: dict[Any, Any] = {}
        # Merge keys (`<<: *defaults`) first, so the mapping's own keys override them.
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self._merge(value_node, result, path, depth, substitute=substitute)
        # A merge re-records the mapping's own position: it is where its keys are.
        self._record_value(path, node.start_mark)
        first_seen: dict[Any, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, ScalarNode):
                self._problem(
                    _mark(self.file, key_node), path, "a mapping key must be a plain value"
                )
                continue
            key = self._scalar(key_node, path, substitute=False)
            child = f"{path}.{key}" if path else str(key)
            if key in first_seen:
                # PyYAML silently keeps the last; in a reviewed manifest that hides a mistake.
                self._problem(
                    _mark(self.file, key_node),
                    child,
                    f"duplicate key '{key}' (first at line {first_seen[key].start_mark.line + 1})",
                )
            first_seen[key] = key_node
            self._record_key(child, key_node.start_mark)
            # Substitution is for spec values (CI secrets), never for identity or kind.
            in_spec = substitute or (depth == 0 and key == "spec")
            result[key] = self._value(value_node, child, depth + 1, substitute=in_spec)
        return result

    def _merge(
        self, value_node: Node, result: dict[Any, Any], path: str, depth: int, *, substitute: bool
    ) -> None:
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        # In a list of merged mappings the earlier ones win, so apply them last.
        for source in reversed(sources):
            if not isinstance(source, MappingNode):
                self._problem(
                    _mark(self.file, source), path, "'<<' merges a mapping or a list of mappings"
                )
                continue
            merged = self._value(source, path, depth + 1, substitute=substitute)
            result.update(merged)

    def _scalar(self, node: ScalarNode, path: str, *, substitute: bool) -> Any:
        if node.tag == _STR_TAG:
            if substitute and "${" in node.value:
                return self._substitute(node, path, _mark(self.file, node))
            return node.value
        if node.tag not in _SCALAR_TAGS:
            self._problem(
                _mark(self.file, node), path, f"unsupported YAML tag '{_short_tag(node.tag)}'"
            )
            return node.value
        try:
            value = _construct_scalar(node.tag, node.value)
        except ConstructorError as error:
            self._problem(_mark(self.file, node), path, f"invalid value: {error.problem}")
            return node.value
        except ValueError:
            # int() refuses more than sys.int_info.str_digits_check_threshold digits.
            self._problem(
                _mark(self.file, node),
                path,
                f"invalid value: a number of {len(node.value):,} digits",
            )
            return node.value
        why = unsendable(value)
        if why is not None:
            self._problem(_mark(self.file, node), path, why)
            return node.value
        return value

    def _substitute(self, node: ScalarNode, path: str, location: SourceLocation) -> Any:
        unset: list[str] = []
        malformed: list[str] = []
        substituted: list[str] = []
        defaulted: list[str] = []

        def replace(match: re.Match[str]) -> str:
            text = match.group(0)
            if text == "$${":
                return "${"
            if match.group(1) is None:
                malformed.append("unclosed '${'")
                return text
            reference = _REFERENCE.fullmatch(match.group(1))
            if reference is None:
                malformed.append(f"'{text}' is not ${{NAME}} or ${{NAME:-default}}")
                return text
            name, default = reference.group(1), reference.group(2)
            value = self.environ.get(name)
            # Shell semantics: `:-` uses the default when the variable is unset or empty.
            if default is not None and not value:
                # The default is written in the manifest, in Git: no secret to mask or seal.
                defaulted.append(default)
                return default
            if value is None:
                unset.append(name)
                return text
            substituted.append(value)
            return value

        text = _SUBSTITUTION.sub(replace, node.value)
        for message in malformed:
            self._problem(location, path, message)
        if unset and self.structure_only:
            # The value is unknown here: the loader checks this field only for what it can be.
            self.document.templated_paths.add(path)
            unset = []
        for name in unset:
            self._problem(
                location,
                path,
                f"environment variable {name} is not set (write ${{{name}:-default}} "
                "to give a default)",
            )
        if not substituted and not defaulted:
            return text
        if substituted:
            # Only what came from the environment is secret.
            self.document.sensitive_paths.add(path)
            for value in substituted:
                register_secret(value)
            register_secret(text)
        # The C composer marks plain scalars with style "", the Python one with None.
        if not node.style and not malformed and not unset:
            # A plain `${MAX_TOKENS}` should become the int it would be if written inline.
            tag: str = _resolver.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
            if tag != _STR_TAG and tag in _SCALAR_TAGS:
                try:
                    value = _construct_scalar(tag, text)
                except (ConstructorError, ValueError):
                    return text
                why = unsendable(value)
                if why is not None:
                    self._problem(location, path, why)
                    return text
                return value
        return text


def _why_unreadable(path: str) -> str | None:
    """Why ``path`` cannot be read as a manifest file; None when it is a regular file.

    Skipping such a file quietly would drop what it describes from the desired
    state, and ``apply --prune`` would then delete it live.
    """
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except OSError as error:
        if os.path.islink(path):
            if error.errno == errno.ELOOP:
                return "a symlink loop"
            return f"a broken symlink (to {os.readlink(path)})"
        return str(error.strerror)
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "not a regular file"


def expand_paths(paths: Sequence[str]) -> tuple[list[str], list[SourceProblem]]:
    """Files to read, in order: folders recursively and sorted, ``-`` for stdin, each once.

    Anything named like a manifest that is not a readable regular file (a broken
    symlink, a symlink loop, a FIFO, a folder) is a problem naming it, never skipped.
    """
    files: list[str] = []
    problems: list[SourceProblem] = []
    seen: set[str] = set()

    def add(name: str, key: str) -> None:
        if key not in seen:
            seen.add(key)
            files.append(name)

    def refuse(name: str, why: str) -> None:
        problems.append(SourceProblem(None, "", f"{name}: cannot be read as a manifest: {why}"))

    for path in paths:
        if path == "-":
            add("-", "-")
        elif os.path.isdir(path):
            named = sorted(
                str(candidate)
                for candidate in Path(path).rglob("*")
                if candidate.suffix in YAML_SUFFIXES
                # Hidden folders (.git, .github) hold other tools' YAML, not manifests.
                and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
            )
            if not named:
                problems.append(SourceProblem(None, "", f"{path}: no *.yaml or *.yml files"))
            for name in named:
                why = _why_unreadable(name)
                if why is None:
                    add(name, os.path.realpath(name))
                else:
                    refuse(name, why)
        elif os.path.lexists(path):
            why = _why_unreadable(path)
            if why is None:
                add(path, os.path.realpath(path))
            else:
                refuse(path, why)
        else:
            problems.append(SourceProblem(None, "", f"{path}: no such file or folder"))
    return files, problems


def read_source(name: str, stdin: TextIO | None) -> tuple[str, str | SourceProblem]:
    """(display name, text) of a file or ``-``; a SourceProblem when it cannot be used."""
    if name == "-":
        display = STDIN_NAME
        stream = sys.stdin if stdin is None else stdin
        buffer = getattr(stream, "buffer", None)
        if buffer is None:
            # An in-memory text stream (tests, embedding): already decoded.
            text = stream.read(MAX_FILE_BYTES + 1)
            if len(text) > MAX_FILE_BYTES:
                return display, _too_large(display)
            return display, text.removeprefix("\ufeff")
        data: bytes = buffer.read(MAX_FILE_BYTES + 1)
    else:
        display = name
        try:
            with open(name, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            return display, SourceProblem(None, "", f"{name}: cannot read: {error.strerror}")
    if len(data) > MAX_FILE_BYTES:
        return display, _too_large(display)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        return display, SourceProblem(
            SourceLocation(display, line, column),
            "",
            f"not valid UTF-8: byte 0x{data[error.start]:02x} at offset {error.start}; "
            "save the file as UTF-8",
        )
    return display, text.removeprefix("\ufeff")


def _too_large(display: str) -> SourceProblem:
    return SourceProblem(
        SourceLocation(display, 1, 1),
        "",
        f"file refused: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB",
    )


def parse_documents(
    display: str, text: str, environ: Mapping[str, str], *, structure_only: bool = False
) -> Iterator[Document | SourceProblem]:
    """Every non-empty document of ``text``; a YAML error ends the file with one problem.

    ``structure_only`` reads no environment variable: ``${VAR:-default}`` takes its
    default and a ``${VAR}`` without one stays as written (``Document.templated_paths``).
    """
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            # `---` followed by nothing (or only comments) is an empty document, not a manifest.
            if node is None or (
                isinstance(node, ScalarNode) and node.tag == _NULL_TAG and node.value == ""
            ):
                continue
            builder = _DocumentBuilder(display, environ, structure_only=structure_only)
            try:
                yield builder.build(node)
            except _Refused as refused:
                yield SourceProblem(_mark(display, node), "", str(refused))
    except yaml.YAMLError as error:
        yield _yaml_problem(display, text, error)
    except RecursionError:
        # Only the pure-Python composer recurses per level; libyaml stops at 1000 itself.
        yield SourceProblem(
            SourceLocation(display, 1, 1),
            "",
            f"file refused: nested deeper than {MAX_DEPTH} levels",
        )


def _yaml_problem(display: str, text: str, error: yaml.YAMLError) -> SourceProblem:
    mark = getattr(error, "problem_mark", None)
    error_line = mark.line + 1 if mark is not None else None
    # PyYAML says "found character '\t' that cannot start any token"; say what is wrong.
    for number, line in enumerate(text.splitlines(), start=1):
        if error_line is not None and number > error_line:
            break
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            return SourceProblem(
                SourceLocation(display, number, indent.index("\t") + 1),
                "",
                "tab used for indentation; YAML indents with spaces only",
            )
    if isinstance(error, yaml.MarkedYAMLError):
        message = f"invalid YAML: {error.problem}"
        if error.context:
            context_mark = error.context_mark
            # libyaml often puts the context mark at the problem itself; only say it if earlier.
            started = (
                f" started at line {context_mark.line + 1}"
                if context_mark is not None and mark is not None and context_mark.line < mark.line
                else ""
            )
            message += f" ({error.context}{started})"
        location = (
            SourceLocation(display, mark.line + 1, mark.column + 1)
            if mark is not None
            else SourceLocation(display, 1, 1)
        )
        return SourceProblem(location, "", message)
    if isinstance(error, yaml.reader.ReaderError):
        # The reader knows only a character offset; turn it into a line and column.
        before = text[: error.position]
        line_number = before.count("\n") + 1
        column = error.position - (before.rfind("\n") + 1) + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        return SourceProblem(
            SourceLocation(display, line_number, column),
            "",
            f"invalid YAML: character U+{code:04X} is not allowed ({error.reason})",
        )
    return SourceProblem(SourceLocation(display, 1, 1), "", f"invalid YAML: {error}")
