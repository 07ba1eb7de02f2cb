"""The kaizenctl command line: a thin click group over the library.

Commands live in ``kaizenctl.commands.<name>`` and are imported only when
used, so ``kaizenctl --help`` stays fast.
"""

from __future__ import annotations

import gc
import importlib
import sys

import click

from kaizenctl import CLI_GC_THRESHOLDS, __version__
from kaizenctl.commands.options import ENVIRONMENT_HELP

# command name -> module under kaizenctl.commands exposing ``command``
COMMANDS: dict[str, str] = {
    "validate": "validate",
    "plan": "plan",
    "show": "show",
    "apply": "apply",
    "export": "export",
    "force-unlock": "force_unlock",
    "schema": "schema",
    "serve": "serve",
    "demo": "demo",
}

SHORT_HELP: dict[str, str] = {
    "validate": "Check manifests without contacting a server.",
    "plan": "Show what apply would change.",
    "show": "Render a saved plan (text, JSON or Markdown).",
    "apply": "Make live state match the manifests.",
    "export": "Write live state as manifests.",
    "force-unlock": "Break a manifest set's lock left by a dead apply.",
    "schema": "Print the JSON Schemas (for editors and tools).",
    "serve": "Run the reference Kaizen Studio server (needs kaizenctl[server]).",
    "demo": "Apply the examples to a local reference server (needs kaizenctl[server]).",
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


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=ENVIRONMENT_HELP,
)
@click.version_option(__version__, prog_name="kaizenctl")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Declarative GitOps reconciler for Kaizen Studio."""
    ctx.obj = {"debug": debug}


EXIT_INTERRUPTED = 130


def _wants_json(argv: list[str]) -> bool:
    """Whether the command line asks for ``--format json`` (read before click parses it,
    so that even a usage error reaches a JSON reader as JSON)."""
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        following = argv[index + 1 : index + 2]
        if arg == "--format=json" or (arg == "--format" and following == ["json"]):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every error is `Error: <message>` and exit 1 (2 means "changes" only).

    With ``--format json`` an error is also one JSON document on standard output
    (``{"type": "error", ...}``), so a job that keeps stdout as its report keeps the reason.
    """
    from kaizenctl.errors import KaizenctlError
    from kaizenctl.redact import redact

    gc.set_threshold(*CLI_GC_THRESHOLDS)
    args = argv if argv is not None else sys.argv[1:]
    debug = "--debug" in args
    as_json = _wants_json(args)
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort as abort:
        if isinstance(abort.__context__, KeyboardInterrupt):
            # Ctrl-C: click turns it into Abort; exit as a shell would (128 + SIGINT).
            return _interrupted(as_json)
        click.echo("Aborted.", err=True)
        _json_error(as_json, "aborted", "aborted")
        return 1
    except click.ClickException as error:
        # Usage errors exit 1, not click's 2: with --detailed-exitcode, 2 means "changes".
        error.show()
        _json_error(as_json, "usage", error.format_message())
        return 1
    except KaizenctlError as error:
        if debug:
            raise
        click.echo(redact(f"Error: {error}"), err=True)
        _json_error(as_json, _error_kind(error), str(error), getattr(error, "problems", None))
        return 1
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except KeyboardInterrupt:
        return _interrupted(as_json)
    return 0


def _interrupted(as_json: bool) -> int:
    click.echo("Interrupted.", err=True)
    _json_error(as_json, "interrupted", "interrupted")
    return EXIT_INTERRUPTED


def _error_kind(error: Exception) -> str:
    from kaizenctl.api.errors import ApiError, TransportError
    from kaizenctl.errors import ApplyError, ManifestError, PlanError, UsageError

    kinds: list[tuple[type[Exception], str]] = [
        (ManifestError, "manifest"),
        (UsageError, "usage"),
        (TransportError, "connection"),
        (ApiError, "api"),
        (PlanError, "plan"),
        (ApplyError, "apply"),
    ]
    return next((kind for cls, kind in kinds if isinstance(error, cls)), "error")


def _json_error(as_json: bool, kind: str, message: str, problems: list[str] | None = None) -> None:
    """The error as one line of JSON on stdout (kaizenctl/schemas/output/error.v1.json)."""
    if not as_json:
        return
    import json

    from kaizenctl.redact import redact

    error: dict[str, object] = {"kind": kind, "message": redact(message)}
    if problems is not None:
        error["problems"] = [redact(problem) for problem in problems]
    document = {"format_version": 1, "type": "error", "error": error}
    click.echo(json.dumps(document, separators=(",", ":"), ensure_ascii=False))
