"""``kaizenctl validate``: check manifests without contacting a server."""

from __future__ import annotations

import click

from kaizenctl.commands.options import ENVIRONMENT_HELP, verbose_option


@click.command("validate", epilog=ENVIRONMENT_HELP)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@verbose_option("-v lists each resource found, with where it is written.")
def command(paths: tuple[str, ...], verbose: int) -> None:
    """Check manifests without contacting a server.

    PATH is a manifest file, a folder (read recursively, sorted) or - for
    standard input. Every problem is reported, each as
    file:line:column: Kind/name: field: message. Exits 1 when any is found.
    ${VAR} and ${VAR:-default} are substituted from the environment; an unset
    variable is a problem, and substituted values are never printed.
    """
    # Imported here so that `kaizenctl --help` does not pay for pydantic and YAML.
    from kaizenctl.errors import ManifestError
    from kaizenctl.manifests.loader import load_manifests

    try:
        manifest_set = load_manifests(paths)
    except ManifestError as error:
        for problem in error.problems:
            click.echo(problem, err=True)
        count = len(error.problems)
        click.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        raise SystemExit(1) from None
    count = len(manifest_set.resources)
    if verbose:
        for resource in manifest_set.resources:
            click.echo(f"{resource.ref}   ({resource.source.file}:{resource.source.line})")
    click.echo(f"{count} resource{'s' if count != 1 else ''} OK")
