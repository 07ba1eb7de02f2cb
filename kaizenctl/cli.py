"""The kaizenctl command line: a thin click group over the library.

Commands live in ``kaizenctl.commands.<name>`` and are imported only when
used, so ``kaizenctl --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from kaizenctl import __version__

# command name -> module under kaizenctl.commands exposing ``command``
COMMANDS: dict[str, str] = {
    "validate": "validate",
    "plan": "plan",
    "apply": "apply",
    "export": "export",
    "serve": "serve",
    "demo": "demo",
}

SHORT_HELP: dict[str, str] = {
    "validate": "Check manifests without contacting a server.",
    "plan": "Show what apply would change.",
    "apply": "Make live state match the manifests.",
    "export": "Write live state as manifests.",
    "serve": "Run the reference Kaizen Studio server.",
    "demo": "Start a local server, apply the examples, plan again.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"kaizenctl.commands.{module_name}")
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing commands must not import them: that is what keeps --help fast.
        with formatter.section("Commands"):
            formatter.write_dl([(name, SHORT_HELP[name]) for name in COMMANDS])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kaizenctl")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Declarative GitOps reconciler for Kaizen Studio."""
    ctx.obj = {"debug": debug}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every error is `Error: <message>` and exit 1 (2 means "changes" only)."""
    from kaizenctl.errors import KaizenctlError
    from kaizenctl.redact import redact

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as error:
        # Usage errors exit 1, not click's 2: with --detailed-exitcode, 2 means "changes".
        error.show()
        return 1
    except KaizenctlError as error:
        if debug:
            raise
        click.echo(redact(f"Error: {error}"), err=True)
        return 1
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    return 0
