"""How a command reports a failure: one red line, then exit status 1."""
from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape


def fail(console: Console, error: Exception | str) -> NoReturn:
    """Print `error` as is (a fix in brackets, such as "[x, y, w, h]", is not Rich markup)
    and exit with status 1."""
    console.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
    raise typer.Exit(1)
