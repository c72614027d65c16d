"""Run the matching engine: one writer per market (see ``trading.matcher``)."""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand

from trading.matcher import BATCH_SIZE, Matcher


class Command(BaseCommand):
    help = (
        "Match the queued orders of every market (or of --market), writing "
        "results in batches. A second matcher for a market waits until the "
        "first stops. SIGTERM or Ctrl-C: finish the batch, then exit."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--market",
            action="append",
            dest="markets",
            metavar="SYMBOL",
            help="Only this market (repeat for several); all markets by default.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=BATCH_SIZE,
            help=f"Commands written per transaction at most (default {BATCH_SIZE}).",
        )

    def handle(self, *args, markets, batch_size, **options):
        stop = []

        def stop_soon(signum, frame):
            stop.append(signum)

        signal.signal(signal.SIGTERM, stop_soon)
        signal.signal(signal.SIGINT, stop_soon)
        matcher = Matcher(
            symbols=markets, batch_size=max(1, batch_size), stopping=lambda: bool(stop)
        )
        matcher.run()
        self.stdout.write("matcher stopped")
