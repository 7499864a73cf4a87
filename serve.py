"""Start the inspection service: the same as `xray serve` (`xray serve --help` for the options).

    python serve.py [--model DIR] [--host 127.0.0.1] [--port 8000] [--data-dir DIR] [--db URL]
                    [--watch DIR] [--no-auth] [--max-in-flight N] [--threads N]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from xray import cli


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
