"""``python -m bridges demo`` and ``python -m bridges bench``."""

from __future__ import annotations

import sys

USAGE = """usage: python -m bridges {demo,bench} [options]

  demo   the library at work on real components, with a live display (needs the demo extra)
  bench  time the bridges against their baselines

python -m bridges <command> --help shows the command's options."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("demo", "bench"):
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
