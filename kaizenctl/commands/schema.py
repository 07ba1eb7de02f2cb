"""`kaizenctl schema [NAME]`: print a JSON Schema shipped with kaizenctl, or write them all."""

from __future__ import annotations

import click

from kaizenctl.commands.options import verbose_option


@click.command("schema")
@click.argument("name", required=False, default="manifest", metavar="[NAME]")
@click.option(
    "--out",
    "out_dir",
    metavar="DIR",
    default=None,
    help="Write every schema file into DIR (for editors in your repository) instead.",
)
@verbose_option("-v lists each file --out writes.")
def command(name: str, out_dir: str | None, verbose: int) -> None:
    """Print the JSON Schema NAME: a kind (Agent, Pipeline, Policy, Deployment),
    `manifest` (a document of any kind; the default), or `plan`, `apply-result`,
    `error` (the versioned JSON outputs).

    With --out DIR every schema is written to DIR, manifests at its top and the
    output schemas under DIR/output; point yaml-language-server at
    DIR/manifest.json (see docs/editors.md).
    """
    from pathlib import Path

    from kaizenctl.errors import UsageError
    from kaizenctl.manifests.schema import packaged_schemas, schema_file_for

    if out_dir is not None:
        folder = Path(out_dir)
        for relative, text in packaged_schemas().items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if verbose:
                click.echo(f"wrote {path}")
        click.echo(f"Wrote {len(packaged_schemas())} schemas to {folder}.")
        return
    wanted = schema_file_for(name)
    if wanted is None:
        from kaizenctl.manifests.schema import schema_names

        raise UsageError(f"no schema {name!r}; one of {', '.join(schema_names())}")
    click.echo(packaged_schemas()[wanted], nl=False)
