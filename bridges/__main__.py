"""``python -m bridges bench`` (and, once it lands, ``python -m bridges demo``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"bench": "_bench"}
    if not argv or argv[0] not in commands:
        print("usage: python -m bridges {" + ",".join(commands) + "} [options]", file=sys.stderr)
        return 2
    if argv[0] == "bench":
        from ._bench import main as bench_main

        return bench_main(argv[1:])
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
