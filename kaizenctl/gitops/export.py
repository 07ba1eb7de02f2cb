"""Export: live state written as manifests, to bring hand-made resources under management.

One file per resource (``agents/<name>.yaml``, ``pipelines/<name>.yaml``,
``policies/<name>.yaml``, ``deployments/<pipeline>-<environment>.yaml``),
references by name, and neither server-owned fields nor values equal to the
contract's defaults — so the files read like hand-written ones and ``plan``
right after an export shows no changes. Node positions are written, because a
manifest without them would leave them to the editor and that is not what is
live.

What a manifest cannot express is not guessed at: the resource is left out (or
the field dropped, for deployment config) with a warning that names it. Left-out
resources show up as unmanaged in ``plan``, which is the truth.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kaizenctl.api.models import PipelineNode
from kaizenctl.api.service import KaizenApi, NamedObject
from kaizenctl.errors import UsageError
from kaizenctl.kinds import KINDS, KindInfo, create_order
from kaizenctl.manifests.models import API_VERSION, NAME_PATTERN, ManifestModel
from kaizenctl.reconcile.diff import values_equal
from kaizenctl.reconcile.live import LiveSnapshot, fetch_live
from kaizenctl.reconcile.state import object_fields

MAX_NAME_LENGTH = 63
_NAME = re.compile(NAME_PATTERN)


@dataclass
class ExportResult:
    """Files written (relative to the export folder) and what could not be expressed."""

    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # What export could not know and wrote by rule, one line each (see ``deployments``).
    by_rule: list[str] = field(default_factory=list)
    # Names export made up (the contract keeps no deployment names), one line each.
    invented_names: list[str] = field(default_factory=list)


def _written_fields(kind: str, live: object, model: type[BaseModel]) -> dict[str, Any]:
    """A live object's fields as a manifest writes them: those equal to the default left out.

    The defaults are the spec model's own (the contract's server defaults), so a
    manifest written here plans as no change.
    """
    written: dict[str, Any] = {}
    for name, value in object_fields(kind, live).items():
        declared = model.model_fields[name]
        if declared.is_required() or not values_equal(
            value, declared.get_default(call_default_factory=True)
        ):
            written[name] = value
    return written


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line text, as a person writes a system prompt."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_document(document: dict[str, Any]) -> str:
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


def _escape(value: Any) -> Any:
    """Keep live text literal: ``${`` in a manifest would be substituted, ``$${`` is not."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {key: _escape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape(item) for item in value]
    return value


def _valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None


def _document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name},
        "spec": _escape(spec),
    }


@dataclass
class _Exporter:
    live: LiveSnapshot
    result: ExportResult = field(default_factory=ExportResult)
    # relative path -> document
    documents: dict[Path, dict[str, Any]] = field(default_factory=dict)
    # Kind -> names exported; what references a resource that was not is not exported.
    exported: dict[str, set[str]] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        self.result.warnings.append(message)

    def add(
        self,
        kind: str,
        name: str,
        live_id: str,
        spec: dict[str, Any],
        model: type[ManifestModel],
        path: Path,
    ) -> bool:
        """Add the document if a manifest can hold it; warn and skip it otherwise."""
        label = f"{kind}/{name} (id {live_id})"
        if not _valid_name(name):
            self.warn(
                f"{label} not exported: its name is not a manifest name "
                f"([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most {MAX_NAME_LENGTH} characters); "
                "rename it in the platform to bring it under management"
            )
            return False
        try:
            model.model_validate(spec)
        except ValidationError as error:
            reasons = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in error.errors(include_url=False)
            )
            self.warn(f"{label} not exported: a manifest cannot hold it ({reasons})")
            return False
        self.documents[path] = _document(kind, name, spec)
        return True

    def objects(self, info: KindInfo) -> None:
        exported = self.exported.setdefault(info.kind, set())
        for item in sorted(self.live.of_kind(info.kind), key=lambda o: o.name):
            problems = self._missing_node_references(info, item)
            if problems:
                label = f"{info.kind}/{item.name} (id {item.id})"
                self.warn(f"{label} not exported: {'; '.join(problems)}")
                continue
            spec = _written_fields(info.kind, item, info.spec_model)
            if info.graph is not None:
                spec.update(self._graph(info, item))
            path = Path(info.plural) / f"{item.name}.yaml"
            if self.add(info.kind, item.name, item.id, spec, info.spec_model, path):
                exported.add(item.name)

    def _missing_node_references(self, info: KindInfo, item: NamedObject) -> list[str]:
        if info.graph_node_kind is None:
            return []
        node_kind = info.graph_node_kind
        names = self.live.names_by_id(node_kind)
        exported = self.exported.get(node_kind, set())
        problems = []
        for node in self.live.nodes.get(item.id, []):
            if node.agent_id is None:
                continue
            name = names.get(node.agent_id)
            if name is None:
                problems.append(
                    f"node {node.id} uses {node_kind.lower()} id {node.agent_id}, which is gone"
                )
            elif name not in exported:
                problems.append(f"node {node.id} uses {node_kind}/{name}, which was not exported")
        return problems

    def _graph(self, info: KindInfo, item: NamedObject) -> dict[str, Any]:
        written: dict[str, Any] = {}
        node_names = self.live.names_by_id(info.graph_node_kind or "")
        nodes = self.live.nodes.get(item.id, [])
        if nodes:
            written["nodes"] = [_node(node, node_names) for node in nodes]
        edges = [
            {
                "from": c.source,
                "to": c.target,
                **({"source_handle": c.source_handle} if c.source_handle else {}),
                **({"target_handle": c.target_handle} if c.target_handle else {}),
            }
            for c in self.live.connections.get(item.id, [])
        ]
        if edges:
            written["edges"] = sorted(edges, key=lambda e: (e["from"], e["to"]))
        return written

    def deployments(self, info: KindInfo) -> None:
        deployed = info.references[0].kind
        versions = {name: o.version for name, o in self.live.state.of_kind(deployed).items()}
        exported = self.exported.get(deployed, set())
        config_by_id = {d.id: d.config for d in self.live.deployments}
        for _key, slot in sorted(self.live.state.deployments.items()):
            if not slot.running_ids:
                continue
            label = f"Deployment {slot.pipeline}/{slot.environment}"
            if slot.active_id is None:
                self.warn(
                    f"{label} not exported: it is still being deployed "
                    f"(v{slot.in_flight_version}); export again once it has settled"
                )
                continue
            if slot.pipeline not in exported:
                self.warn(f"{label} not exported: {deployed}/{slot.pipeline} was not exported")
                continue
            if slot.in_flight_id is not None:
                self.warn(
                    f"{label}: a deployment of v{slot.in_flight_version} is in flight; "
                    f"exported what is active (v{slot.active_version})"
                )
            config = config_by_id.get(slot.active_id) or {}
            if config:
                self.warn(
                    f"{label}: deployment config ({', '.join(sorted(config))}) cannot be "
                    "expressed in a manifest; exported without it"
                )
            latest = slot.active_version == versions.get(slot.pipeline)
            name = _deployment_name(slot.pipeline, slot.environment)
            spec: dict[str, Any] = {
                "pipeline": slot.pipeline,
                "environment": slot.environment,
                "version": "latest" if latest else slot.active_version,
            }
            path = Path(info.plural) / f"{name}.yaml"
            if self.add(info.kind, name, slot.active_id, spec, info.spec_model, path):
                # The contract records neither whether a deployment was deployed or promoted
                # nor its manifest name: MANIFESTS.md's rule decides, and the output says so.
                where = f"{slot.pipeline} in {slot.environment}"
                self.result.by_rule.append(
                    f"{path.as_posix()}: version: {spec['version']} "
                    f"({where} runs v{slot.active_version}"
                    + (", its pipeline's current version)" if latest else ")")
                )
                self.result.invented_names.append(f"{info.kind}/{name}: {where}")


def _node(node: PipelineNode, agent_names: dict[str, str]) -> dict[str, Any]:
    written: dict[str, Any] = {"id": node.id, "node_type": node.node_type}
    if node.agent_id is not None:
        written["agent"] = agent_names[node.agent_id]
    if node.config:
        written["config"] = node.config
    written["position"] = {"x": _number(node.x), "y": _number(node.y)}
    return written


def _number(value: float) -> int | float:
    """300.0 is written 300: what a person would write, and equal when compared."""
    return int(value) if float(value).is_integer() else value


def _deployment_name(pipeline: str, environment: str) -> str:
    name = f"{pipeline}-{environment}"
    if len(name) <= MAX_NAME_LENGTH:
        return name
    # Long pipeline names: keep the name unique and within the limit.
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    head = name[: MAX_NAME_LENGTH - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def export_documents(live: LiveSnapshot) -> tuple[dict[Path, dict[str, Any]], ExportResult]:
    """Relative path -> manifest document for everything a manifest can hold; and the
    result so far (warnings, what was written by rule, invented names; no files yet)."""
    exporter = _Exporter(live)
    # Create order: a resource is exported only after what it references.
    for kind in create_order():
        info = KINDS[kind]
        if info.service is not None:
            exporter.objects(info)
        elif info.references:
            exporter.deployments(info)
        elif live.state.of_kind(kind):
            # Gateways: their api_key is write-only, so a manifest cannot be rebuilt from them.
            exporter.result.warnings.append(
                f"{len(live.state.of_kind(kind))} {info.plural} not exported: a gateway's "
                "api_key cannot be read back; write their manifests by hand "
                "(api_key: ${VAR})"
            )
    return exporter.documents, exporter.result


def _refuse_outside(out_dir: Path, paths: list[Path]) -> None:
    """Refuse, before anything is written or deleted, a path that leads out of ``out_dir``.

    A symlinked subfolder (``agents -> ../outside``) or a symlinked file would make
    export overwrite, or with --force delete, files that are not its to touch.
    """
    root = Path(os.path.realpath(out_dir))
    for path in paths:
        if not os.path.lexists(path):
            continue
        resolved = Path(os.path.realpath(path))
        if path.is_symlink() or not resolved.is_relative_to(root):
            raise UsageError(
                f"--out {out_dir}: {path} is a symlink (to {os.readlink(path)}); "
                "export writes and deletes only inside --out, never through a symlink"
                if path.is_symlink()
                else f"--out {out_dir}: {path} leads outside it (to {resolved})"
            )


def _prepare(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: exists and is not a folder")
    _refuse_outside(out_dir, [out_dir / info.plural for info in KINDS.values()])
    existing = sorted(out_dir.rglob("*.y*ml")) if out_dir.exists() else []
    if existing and not force:
        raise UsageError(
            f"--out {out_dir}: already holds {len(existing)} manifest file(s); "
            "export writes a complete set, pass --force to replace them"
        )
    # A stale file from an earlier export would describe something no longer live.
    for folder in (info.plural for info in KINDS.values()):
        for stale in sorted((out_dir / folder).glob("*.yaml")) if force else []:
            stale.unlink()


async def export_async(api: KaizenApi, out_dir: str | Path, *, force: bool = False) -> ExportResult:
    """Read all live state and write it under ``out_dir`` as manifests."""
    out = Path(out_dir)
    _prepare(out, force)
    live = await fetch_live(api)
    documents, result = export_documents(live)
    _refuse_outside(out, [out / relative for relative in documents])
    for relative, document in documents.items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(dump_document(document), encoding="utf-8")
        result.files.append(relative)
    return result
