"""The ``--help`` layout: whole command descriptions, a "start here" line, and ``serve``'s many
options grouped by topic.

Click cuts a command's description at about 45 characters in the group's listing ("The access and
gitAccess configurations of a..."), and lists ``serve``'s options as one long run. The groups come
from :data:`SERVE_SECTIONS`, a table of option name to section: an option added to ``serve`` only
needs an entry there, and one without an entry is still shown, under "Other".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, ClassVar

import click

START_HERE = ("Start here: tenant-access serve --demo  (a local server with a demo service; it prints a "
              "token and curl commands to paste)")

#: The sections of ``serve --help``, in order; each option (by its parameter name) in one of them.
SERVE_SECTIONS: dict[str, tuple[str, ...]] = {
    "Start here": ("demo", "seed"),
    "Listening": ("host", "port", "tls", "tls_cert", "tls_key", "header_timeout"),
    "Storage": ("data_dir", "database_url", "migrate", "database_pool_size"),
    "Authentication and limits": ("auth", "token_keys", "token_audience", "token_issuer",
                                  "auth_failures_per_minute", "rate_limit", "regenerate_rate_limit"),
    "Features": ("api_style", "console", "metrics", "emulator_controls"),
    "Logging": ("log_level", "log_format"),
}
OTHER = "Other"
#: How long a command's one-line description may be before it is shortened: long enough for any
#: first sentence we write, so none is cut mid-sentence.
SHORT_HELP_LIMIT = 150


class HelpGroup(click.Group):
    """A group whose listing shows each command's first sentence whole, then :data:`START_HERE`."""

    #: Groups made with ``@group.group()`` are HelpGroups too: every listing shows whole sentences.
    group_class = type

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            rows.append((name, command.get_short_help_str(limit=SHORT_HELP_LIMIT)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        if ctx.parent is None:
            formatter.write_paragraph()
            formatter.write_text(START_HERE)


class LazyGroup(HelpGroup):
    """A group some of whose commands live in modules imported only when one of them is named, or
    the listing is shown: ``tenant-access serve`` does not pay for importing every other command's
    module (start to first answer is a product figure)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Each command not yet loaded, by name, and what imports it (:func:`lazy`).
        self.lazy: dict[str, Callable[[], click.Command]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        load = self.lazy.pop(cmd_name, None)
        if load is not None:
            self.add_command(load(), cmd_name)
        return super().get_command(ctx, cmd_name)


def lazy(module: str, attribute: str) -> Callable[[], click.Command]:
    """What imports ``tenant_access.<module>`` and answers its command ``attribute``."""
    def load() -> click.Command:
        command: click.Command = getattr(importlib.import_module(f"tenant_access.{module}"), attribute)
        return command
    return load


class SectionedCommand(click.Command):
    """A command whose options are listed under the headings of ``sections`` (name -> section),
    in the table's order; options missing from the table, ``--help`` among them, go under "Other"."""

    sections: ClassVar[dict[str, tuple[str, ...]]] = {}

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        where = {name: (title, rank) for title, names in self.sections.items() for rank, name in enumerate(names)}
        grouped: dict[str, list[tuple[int, tuple[str, str]]]] = {title: [] for title in self.sections}
        grouped[OTHER] = []
        for position, param in enumerate(self.get_params(ctx)):
            record = param.get_help_record(ctx)
            if record is not None:
                title, rank = where.get(param.name or "", (OTHER, len(where) + position))
                grouped[title].append((rank, record))
        for title, rows in grouped.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl([record for _, record in sorted(rows, key=lambda row: row[0])])


class ServeCommand(SectionedCommand):
    sections: ClassVar[dict[str, tuple[str, ...]]] = SERVE_SECTIONS
