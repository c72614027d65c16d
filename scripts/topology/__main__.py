"""``python -m scripts.topology``: the topology with demo data, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from scripts.topology import DEFAULT_POSTGRES_URL, Topology, TopologyError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--url-mode", choices=("proxy", "public"), default="proxy")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {message}", flush=True)

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    postgres_url = os.environ.get("POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        with Topology(
            instances=args.instances,
            postgres_url=postgres_url,
            url_mode=args.url_mode,
            log=log,
        ) as topology:
            # A database of its own, dropped at the end: the demo users'
            # published passwords harm nobody.
            log(topology.manage("seed_demo", "--force").strip())
            log(f"open {topology.url}; logs in {topology.directory}; Ctrl-C stops")
            signal.pause()
    except TopologyError as error:
        print(f"topology: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("topology: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
