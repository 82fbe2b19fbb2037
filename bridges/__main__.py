"""``python -m bridges demo`` and ``python -m bridges bench``."""

from __future__ import annotations

import sys

USAGE = """usage: python -m bridges [--help] [--version] {demo,bench} [options]

  demo   the library at work on real components, with a live display (needs the demo extra)
  bench  time the bridges against their baselines (needs the bench extra)

python -m bridges <command> --help shows the command's options."""

COMMANDS = ("demo", "bench")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 2 a usage error)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv and argv[0] == "--version":
        from . import __version__

        print(f"bridges {__version__}")
        return 0
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        what = "option" if argv[0].startswith("-") else "command"
        print(
            f"python -m bridges: unknown {what} {argv[0]!r} (choose from {', '.join(COMMANDS)})",
            file=sys.stderr,
        )
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "demo":
        try:
            from ._demo import main as demo_main
        except ImportError as exc:
            print(
                f"the demo needs the demo extra: pip install 'streambridges[demo]' ({exc})",
                file=sys.stderr,
            )
            return 2
        return demo_main(argv[1:])
    from ._bench import main as bench_main

    return bench_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
