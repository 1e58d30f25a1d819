"""Imported first by every script, before numpy and torch load (about a second of a run's start): a Ctrl-C in that
second ends in one line, as it does later, instead of a traceback through the import machinery. Nothing has been
written by then. `common.args.parse_args` replaces this hook with the scripts' full one (`one_line_errors`)."""

import sys


def _interrupted_while_starting(kind, exc, tb) -> None:
    if issubclass(kind, KeyboardInterrupt):
        print("\ninterrupted while starting; nothing was written", file=sys.stderr)
    else:
        sys.__excepthook__(kind, exc, tb)


sys.excepthook = _interrupted_while_starting
