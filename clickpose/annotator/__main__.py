"""python -m clickpose.annotator TASK_DIR [--host H] [--port P] [--checkpoint C]
(the token, when needed, comes from CLICKPOSE_ANNOTATOR_TOKEN)."""
from __future__ import annotations

import argparse

from clickpose.settings import apply_environment_defaults


def main() -> None:
    apply_environment_defaults()
    from clickpose.annotator.serve import DEFAULT_HOST, DEFAULT_PORT, serve

    parser = argparse.ArgumentParser(prog="python -m clickpose.annotator")
    parser.add_argument("task_dir")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    serve(args.task_dir, host=args.host, port=args.port, checkpoint=args.checkpoint)


if __name__ == "__main__":
    main()
