"""``kaizenctl validate``: check manifests without contacting a server."""

from __future__ import annotations

import click

from kaizenctl.commands.options import ENVIRONMENT_HELP, verbose_option

# What `validate` reads when given no PATH: the folder the docs and CI examples use.
DEFAULT_PATH = "manifests"


@click.command("validate", epilog=ENVIRONMENT_HELP)
@click.argument("paths", nargs=-1, metavar="[PATH...]")
@click.option(
    "--structure-only",
    is_flag=True,
    help=(
        "Read no environment variable: ${VAR:-default} takes its default, and a field "
        "written as ${VAR} is checked only for what any value could make of it. "
        "For machines without the CI secrets (the pre-commit hook)."
    ),
)
@verbose_option("-v lists each resource found, with where it is written.")
def command(paths: tuple[str, ...], structure_only: bool, verbose: int) -> None:
    """Check manifests without contacting a server.

    PATH is a manifest file, a folder (read recursively, sorted) or - for
    standard input; without one, ./manifests is read. Every problem is
    reported, each as file:line:column: Kind/name: field: message. Exits 1
    when any is found. ${VAR} and ${VAR:-default} are substituted from the
    environment; an unset variable is a problem (unless --structure-only), and
    substituted values are never printed.
    """
    # Imported here so that `kaizenctl --help` does not pay for pydantic and YAML.
    from kaizenctl.errors import ManifestError, UsageError
    from kaizenctl.manifests.loader import load_manifests

    if not paths:
        import os

        if not os.path.isdir(DEFAULT_PATH):
            raise UsageError(
                f"no PATH given and there is no ./{DEFAULT_PATH} folder here: "
                "name the manifest files or folders to check"
            )
        paths = (DEFAULT_PATH,)
    try:
        manifest_set = load_manifests(paths, structure_only=structure_only)
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
    scope = " (structure only: ${VAR} values not read)" if structure_only else ""
    click.echo(f"{count} resource{'s' if count != 1 else ''} OK{scope}")
