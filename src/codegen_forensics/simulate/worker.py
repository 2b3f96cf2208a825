"""The worker process of a parallel simulation: ``python -m`` this module.

It reads the pickled (config, catalog, window start, options) from standard input
and writes the stream as length-prefixed pickled frames to standard output; log
lines and errors go to standard error.
"""

from __future__ import annotations

import sys

from codegen_forensics.simulate.traffic import run_worker


def main() -> None:
    run_worker(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
