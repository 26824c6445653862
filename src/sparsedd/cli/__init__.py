"""The command line: ``main`` (run, results, presets, status) and ``analysis`` (analyze,
plot, report, export).

Importing the command line takes a moment (click, rich); a Ctrl-C in that moment ends the
command with one line and status 130 instead of a traceback from inside an import. ``main``
puts Python's own Ctrl-C handling back before it parses the command.
"""

import signal
import sys
from types import FrameType

INTERRUPTED = "sparsedd: interrupted; re-run the same command to resume"


def _interrupted_while_importing(signum: int, frame: FrameType | None) -> None:
    print(INTERRUPTED, file=sys.stderr)
    raise SystemExit(130)  # SystemExit prints no traceback, wherever it is raised


def restore_ctrl_c() -> None:
    """Ctrl-C raises KeyboardInterrupt again (the commands handle it themselves)."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_importing:
        signal.signal(signal.SIGINT, signal.default_int_handler)


try:  # only where Ctrl-C still has Python's default meaning (not in a thread, not ignored)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_importing)
except ValueError:  # not the main thread
    pass
