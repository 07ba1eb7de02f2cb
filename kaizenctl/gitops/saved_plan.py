"""Saved plans: ``plan --out FILE`` writes one, ``apply --plan FILE`` does exactly it or refuses.

The file (JSON, ``format_version`` 3) holds:

- ``server``, ``dialect`` and ``organization_id``: where the plan was made, and in which
  API dialect (a plan made in one is refused in another);
- ``desired``: the manifests the plan was made from (``${VAR}`` values as their templates);
- ``plan``: the plan value itself, actions with their typed payloads, and the manifest
  set it was made for (``set_name``: apply takes that set's lock);
- ``fingerprints``: one per live resource the plan read (``gitops.fingerprint``),
  and ``graphs_read``, the pipelines whose graphs it fetched;
- ``secrets``: how to get each ``${VAR}`` value back (``gitops.secrets``).

Apply reads live state again the same way, and refuses before any write —
"nothing was changed" — when the server or organization differs, when any
fingerprint differs or a resource appeared or disappeared, or when a secret's
environment value is not the planned one. Otherwise it executes the saved
actions, not a new plan. No token, password or ``${VAR}`` value is in the file.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from kaizenctl import __version__
from kaizenctl.api.service import KaizenApi
from kaizenctl.errors import PlanError, UsageError
from kaizenctl.gitops.fingerprint import (
    SecretShield,
    compare_fingerprints,
    graphs_read,
    live_fingerprints,
)
from kaizenctl.gitops.secrets import (
    SealedSecret,
    clear_texts,
    mask_tree,
    restore_tree,
    seal,
    set_at,
    unseal,
)
from kaizenctl.manifests.models import API_VERSION, Resource
from kaizenctl.ownership.inventory import DEFAULT_SET
from kaizenctl.reconcile.live import LiveSnapshot, fetch_live
from kaizenctl.reconcile.plan import Plan
from kaizenctl.redact import MASK

# 3: one typed payload per verb, the graph drawing apart from it (#11).
SAVED_PLAN_FORMAT_VERSION = 3
SAVED_PLAN_TYPE = "kaizenctl-saved-plan"


class SavedPlan(BaseModel):
    """The saved-plan file, as written and read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int
    type: Literal["kaizenctl-saved-plan"]
    created_at: str
    kaizenctl_version: str
    server: str
    # Files from before dialects were recorded were all made against the contract.
    dialect: str = "contract"
    organization_id: str
    graphs_read: tuple[str, ...]
    fingerprints: dict[str, str]
    # Salt of the scrypt fingerprints of resources that hold a secret (hex).
    fingerprint_salt: str = ""
    secrets: tuple[SealedSecret, ...] = ()
    desired: tuple[dict[str, Any], ...] = ()
    plan: dict[str, Any]


def shown_plan(saved: SavedPlan, *, label: str) -> Plan:
    """The plan as ``show`` renders it, without the environment: each secret as the mask.

    The file holds a placeholder where a secret was; a typed payload field (a gateway's
    key) cannot hold a placeholder, but it can hold the mask.
    """
    masked = {secret.id: MASK for secret in saved.secrets}
    try:
        return Plan.model_validate(restore_tree(saved.plan, masked))
    except ValidationError as error:
        raise UsageError(f"{label}: damaged saved plan: {error}") from None


def saved_set_name(saved: SavedPlan) -> str:
    """The manifest set the plan was made for (plans from before sets: the default set)."""
    name = saved.plan.get("set_name", DEFAULT_SET)
    return name if isinstance(name, str) else DEFAULT_SET


def server_identity(api: KaizenApi) -> str:
    """The base URL without credentials, query or trailing slash: where a plan belongs."""
    parts = urlsplit(api.server_identity)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _desired_documents(
    resources: list[Resource], sealed: list[SealedSecret]
) -> list[dict[str, Any]]:
    templates = {(s.ref, s.path): s.template for s in sealed}
    documents = []
    for resource in resources:
        spec = resource.spec.model_dump(mode="json", by_alias=True)
        for path in resource.sensitive_paths:
            # The template is what the manifest says; the value stays in the environment.
            set_at(spec, path, templates[(resource.ref, path)])
        metadata: dict[str, Any] = {"name": resource.name}
        if resource.annotations:
            metadata["annotations"] = dict(resource.annotations)
        documents.append(
            {"apiVersion": API_VERSION, "kind": resource.kind, "metadata": metadata, "spec": spec}
        )
    return documents


def _plan_document(plan: Plan) -> dict[str, Any]:
    data = plan.model_dump(mode="json")
    for action in data["actions"]:
        for change in action["changes"]:
            if change["sensitive"]:
                # Display-only; apply sends the payload. The old live value may be a secret too.
                change["before"] = MASK if change["before"] is not None else None
                change["after"] = MASK if change["after"] is not None else None
    return data


def _find_leaks(document: dict[str, Any], texts: dict[str, str]) -> list[str]:
    """Where each text that must stay secret still appears (a part of a longer string)."""
    sections: list[tuple[str, Any]] = [
        (f"action {a['id']}", a) for a in document["plan"]["actions"]
    ]
    sections += [("the plan", {k: v for k, v in document["plan"].items() if k != "actions"})]
    sections += [(f"desired {d['kind']}/{d['metadata']['name']}", d) for d in document["desired"]]
    leaks = []
    for where, section in sections:
        dumped = json.dumps(section, ensure_ascii=False)
        for text, label in texts.items():
            if text in dumped or json.dumps(text, ensure_ascii=False)[1:-1] in dumped:
                leaks.append(f"{label} appears in {where}")
    return leaks


def _shield(salt: bytes, sealed: list[SealedSecret], texts: dict[str, str]) -> SecretShield:
    return SecretShield(
        salt=salt, sealed_refs=frozenset(s.ref for s in sealed), texts=frozenset(texts)
    )


def build_saved_plan(
    *,
    server: str,
    organization_id: str,
    plan: Plan,
    live: LiveSnapshot,
    resources: list[Resource],
    environ: Mapping[str, str] | None = None,
    dialect: str = "contract",
) -> SavedPlan:
    """The saved-plan value; ``UsageError`` if a secret could not be kept out of it."""
    environ = os.environ if environ is None else environ
    sealed, values = seal(resources)
    texts = clear_texts(sealed, values, environ)
    shield = _shield(secrets.token_bytes(16), sealed, texts)
    document: dict[str, Any] = {
        "format_version": SAVED_PLAN_FORMAT_VERSION,
        "type": SAVED_PLAN_TYPE,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "kaizenctl_version": __version__,
        "server": server,
        "dialect": dialect,
        "organization_id": organization_id,
        "graphs_read": graphs_read(live),
        "fingerprints": live_fingerprints(live, shield),
        "fingerprint_salt": shield.salt.hex(),
        "secrets": [s.model_dump(mode="json") for s in sealed],
        "desired": mask_tree(_desired_documents(resources, sealed), values),
        "plan": mask_tree(_plan_document(plan), values),
    }
    leaks = _find_leaks(document, texts)
    if leaks:
        raise UsageError(
            "cannot save the plan: a secret would be written in clear (saved plans never "
            "hold one):\n" + "\n".join(f"  {leak}" for leak in leaks)
        )
    return SavedPlan.model_validate(document)


def check_plan_destination(out_file: str | Path) -> None:
    """Refuse, before anything is read, a ``--out`` that a saved plan cannot be written to."""
    shown = str(out_file)
    if shown == "-":
        raise UsageError(
            "--out -: a saved plan is a file that `apply --plan FILE` reads; standard output "
            "is not supported (it carries the rendered plan); give a file name"
        )
    path = Path(out_file)
    if path.is_dir():
        raise UsageError(f"--out {shown}: is a folder; give a file name, e.g. {path / 'plan.json'}")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"--out {shown}: no such folder {parent}; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {shown}: cannot write in the folder {parent}")


def write_saved_plan(saved: SavedPlan, out_file: str | Path) -> None:
    """Write atomically, readable by the owner only (it names servers and resources)."""
    check_plan_destination(out_file)
    try:
        _write_atomically(saved, Path(out_file))
    except OSError as error:
        raise UsageError(f"--out {out_file}: cannot write it ({error.strerror})") from None


def _write_atomically(saved: SavedPlan, path: Path) -> None:
    text = json.dumps(saved.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_saved_plan(plan_file: str | Path, *, label: str | None = None) -> SavedPlan:
    """The saved plan in ``plan_file``; errors name it as ``label`` (``--plan FILE`` by default)."""
    name = f"--plan {plan_file}" if label is None else label
    try:
        data = json.loads(Path(plan_file).read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"{name}: cannot read it ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{name}: not a saved plan (invalid JSON: {error})") from None
    if not isinstance(data, dict) or data.get("type") != SAVED_PLAN_TYPE:
        raise UsageError(f"{name}: not a saved plan (write one with `plan --out`)")
    if data.get("format_version") != SAVED_PLAN_FORMAT_VERSION:
        raise UsageError(
            f"{name}: saved-plan format_version {data.get('format_version')!r} is not "
            f"{SAVED_PLAN_FORMAT_VERSION}; make the plan again with this kaizenctl"
        )
    try:
        return SavedPlan.model_validate(data)
    except ValidationError as error:
        raise UsageError(f"{name}: damaged saved plan: {error}") from None


async def save_plan(
    api: KaizenApi,
    out_file: str | Path,
    plan: Plan,
    live: LiveSnapshot,
    resources: list[Resource],
) -> SavedPlan:
    """Save ``plan`` (made from ``resources`` against ``live``) for ``apply --plan``."""
    user = await api.current_user()
    saved = build_saved_plan(
        server=server_identity(api),
        organization_id=user.organization_id,
        plan=plan,
        live=live,
        resources=resources,
        dialect=api.capabilities.dialect,
    )
    write_saved_plan(saved, out_file)
    return saved


async def check_saved_plan(
    api: KaizenApi, saved: SavedPlan, environ: Mapping[str, str] | None = None
) -> tuple[Plan, LiveSnapshot]:
    """The saved plan and fresh live state, or an error saying why it must not be applied."""
    environ = os.environ if environ is None else environ
    refuse = "refusing to apply the saved plan; nothing was changed"
    here = server_identity(api)
    if saved.server != here:
        raise UsageError(f"{refuse}: it was made for {saved.server}, not {here}")
    dialect = api.capabilities.dialect
    if saved.dialect != dialect:
        raise UsageError(
            f"{refuse}: it was made in the {saved.dialect} dialect, and this server is spoken "
            f"to in the {dialect} dialect"
        )
    user = await api.current_user()
    if saved.organization_id != user.organization_id:
        raise UsageError(
            f"{refuse}: it was made for organization {saved.organization_id}, and this login "
            f"belongs to {user.organization_id}"
        )
    values = unseal(list(saved.secrets), environ)
    try:
        plan = Plan.model_validate(restore_tree(saved.plan, values))
    except ValidationError as error:
        raise UsageError(f"{refuse}: damaged saved plan: {error}") from None
    in_scope = frozenset(saved.graphs_read)
    live = await fetch_live(
        api, pipelines_in_scope=lambda name: name in in_scope, set_name=saved_set_name(saved)
    )
    shield = _shield(
        bytes.fromhex(saved.fingerprint_salt),
        list(saved.secrets),
        clear_texts(list(saved.secrets), values, environ),
    )
    moved = compare_fingerprints(saved.fingerprints, live_fingerprints(live, shield))
    if moved:
        moved_refs = {line.partition(": ")[0] for line in moved}
        if moved_refs <= {action.ref for action in plan.actions}:
            # Only what the plan itself changes has changed: its own writes, most likely.
            raise PlanError(
                f"{refuse}: it was already applied, in whole or in part: every resource that "
                f"changed since it was made is one it changes ({', '.join(sorted(moved_refs))}); "
                "run `kaizenctl plan` to see whether anything is left to do"
            )
        raise PlanError(
            f"{refuse}: it is stale, live state changed since the plan was made; plan again "
            "and review:\n" + "\n".join(f"  {line}" for line in moved)
        )
    return plan, live


async def load_saved_plan(api: KaizenApi, plan_file: str | Path) -> tuple[Plan, LiveSnapshot]:
    """Read a saved plan and check it against live state (see ``check_saved_plan``)."""
    return await check_saved_plan(api, read_saved_plan(plan_file))
