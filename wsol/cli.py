"""The ``wsol`` command: ``wsol run …``, ``wsol aggregate …``, ``wsol select …``, ``wsol merge …``,
``wsol cache …``, each the same as its ``python -m wsol.<command>`` form."""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

COMMANDS = {
    "run": "evaluate one configuration, or a sweep with -m (Hydra overrides)",
    "aggregate": "one table of every run under a multirun folder",
    "select": "choose settings on a val sweep and report them on test",
    "merge": "merge the shards of one evaluation",
    "cache": "list, prune or clear the map cache",
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        lines = [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
        usage = "usage: wsol COMMAND [ARGS...]   (wsol COMMAND --help for one)\n" + "\n".join(lines)
        if args and args[0] not in ("-h", "--help"):
            print(f"error: unknown command {args[0]!r}\n{usage}", file=sys.stderr)
            sys.exit(2)
        print(usage)
        return
    command, rest = args[0], args[1:]
    module = importlib.import_module(f"wsol.{command}")
    if command == "run":  # Hydra reads sys.argv itself
        sys.argv = [f"wsol {command}", *rest]
        module.main()
        return
    code = module.main(rest)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
