"""Check the ledger's invariants; exit 1 and list what is wrong if any fails.

Safe on a live database: it only reads, from one consistent snapshot.
"""

from django.core.management.base import BaseCommand, CommandError

from trading.invariants import ledger_problems


class Command(BaseCommand):
    help = (
        "Check that balances, the ledger, deposits, withdrawals and open orders "
        "agree. Exits non-zero and lists the problems when they do not."
    )

    def handle(self, *args, **options):
        problems = ledger_problems()
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise CommandError(f"{len(problems)} ledger problem(s) found.")
        self.stdout.write(self.style.SUCCESS("The ledger is consistent."))
