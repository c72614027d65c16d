"""docs/RELIABILITY.md: every fault, attack and hostile input the suite tries.

    python -m core.tests.reliability          # or: make reliability
    python -m core.tests.reliability --check  # exit 1 when the file is stale

A test that tries one says so with ``@pytest.mark.reliability("<id>")``; the
id is a row of ``ATTEMPTS`` below, which says what is tried and what the tests
assert. The report lists each row with the tests that carry its id, found by
collecting the suite (no test runs). Collection sees every test whatever the
database: ``postgres`` tests are deselected only after they are collected.

A row no test carries, or a marker naming no row, is an error: the report can
claim nothing the suite does not try.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "RELIABILITY.md"
COMMAND = "make reliability"

INTRO = """\
# Reliability

Every fault, attack and hostile input the test suite tries, how it tries it
and what the tests assert. Generated from the suite by `{command}`
(`python -m core.tests.reliability`): each row is an id in
`core/tests/reliability.py`, and the tests are those marked
`@pytest.mark.reliability("<id>")`. A row no test carries cannot be written;
`core/tests/test_reliability.py` fails when this file differs from what the
suite gives. Do not edit it by hand.

Tests marked *PostgreSQL* run only in the PostgreSQL pass of `make test`
(row locks, real concurrency, the production topology).
"""

# Heading -> {id: (what is tried, what the tests assert)}, in report order.
AREAS: dict[str, dict[str, tuple[str, str]]] = {
    "Database faults": {
        "db-lost-before-write": (
            "The request's own PostgreSQL connection is killed "
            "(`pg_terminate_backend`) before an order, a form or a read sends "
            "anything that writes",
            "503 `unavailable` (JSON on the API, a page elsewhere, `Retry-After`), "
            "saying nothing was changed; nothing was; the next request works",
        ),
        "db-lost-after-commit": (
            "The connection is killed just after an order or a withdrawal "
            "committed, while the answer is being read back",
            "The answer is the success (order `accepted`, 202 with its `url`); "
            "the row exists once",
        ),
        "db-restart": (
            "A PostgreSQL cluster of the test's own restarted (`fast`, then "
            "`immediate`) under orders, withdrawals and page loads against "
            "gunicorn and `run_matcher`",
            "Only clean 503s during the restart, never a 500; every order told "
            "accepted exists, the ledger balances; app and matcher reconnect "
            "by themselves",
        ),
        "db-constraints": (
            "Rows that break a money invariant written straight to the database "
            "(a negative balance, a fill beyond the quantity, funds locked on a "
            "closed order, a reused open client order id)",
            "The database refuses them (`CheckConstraint`, unique constraints)",
        ),
        "ledger-tampered": (
            "Balances, ledger entries, deposits, fills or the book altered "
            "behind the app's back",
            "`check_ledger` names each broken invariant and exits non-zero",
        ),
    },
    "S3 store faults": {
        "store-refused": (
            "Nothing listens at the object store's address while users upload, "
            "browse, open media and staff use the admin; the app starts",
            "`StorageUnavailable` naming what to check; an upload is a message "
            "next to the field and changes nothing; pages render; media and "
            "the admin answer 503, never a traceback; start-up contacts nothing",
        ),
        "store-errors": (
            "The store answers 5xx, never answers, or refuses the credentials "
            "(the app, `setup_minio`, `migrate_media`)",
            "Bounded retries within a deadline, then `StorageUnavailable`; "
            "commands exit non-zero naming the endpoint or the keys",
        ),
        "store-hung": (
            "The store process paused (SIGSTOP) during uploads, media requests "
            "and readiness probes, then resumed",
            "Media 503 within the deadline, no worker held, uploads refused "
            "with nothing changed, objects written late are deleted, "
            "readiness reports it, everything works after resume",
        ),
        "store-outage-topology": (
            "The store stopped under traffic through nginx and three gunicorn "
            "instances, then started again",
            "Every request answered, none with a server error; pictures 503 "
            "asking to retry; uploads refused saying why; readiness fails; no "
            "row points at a missing object; works again without a restart",
        ),
        "store-cleanup": (
            "A deletion or a row write fails after an object was stored; the "
            "database connection is lost at or just after the COMMIT of an "
            "avatar or identity-document upload",
            "The orphan is queued and removed when the store returns; a row "
            "write failed before its COMMIT removes the new object; when the "
            "COMMIT's outcome is unknown the object is kept, the row (re-read) "
            "names one that exists, and media_orphans removes what no row names",
        ),
        "store-migration-cut": (
            "`migrate_media` cut off: the server goes away, Ctrl-C, a file "
            "changes or vanishes during its upload, a copy across file systems "
            "is interrupted",
            "Only whole objects are left; the run names what failed; the next "
            "run finishes",
        ),
    },
    "Redis down": {
        "redis-down": (
            "The tests' own Redis killed or paused (SIGSTOP) under page loads, "
            "log-ins, the API and session changes, then started again",
            "Everything answers from process memory, one timeout per retry "
            "period; ended sessions stay ended and deletions reach Redis once "
            "it is back",
        ),
        "stream-without-redis": (
            "The live stream opened while Redis is unreachable",
            "It says it is unavailable instead of hanging",
        ),
        "matcher-without-redis": (
            "The tests' own Redis paused (SIGSTOP) while the matcher commits "
            "batches and a live stream is open, then resumed",
            "Every batch is matched and committed; Redis is tried once per "
            "retry period (one `REDIS_TIMEOUT`), not once a batch, with one log "
            "line and no traceback; events are published again once it "
            "answers, and the stream that missed some resyncs (`gap`) to a "
            "snapshot that has them",
        ),
    },
    "Mail server down": {
        "mail-down": (
            "The mail server refusing connections (a closed loopback port), or "
            "taking them and never answering, while users change passwords, "
            "turn 2FA off, sign up, ask for a password reset, confirm a new "
            "e-mail address, sign in from a new browser, make and revoke API "
            "keys, save addresses, turn 'saved addresses only' off, request and "
            "cancel withdrawals, and staff approve them",
            "Each action is done and answered as done; the lost notice is "
            "logged at ERROR naming the user and the notice; a lost sign-up link "
            "or reset mail is said to be lost, not sent, and does not use up its "
            "limit; a new browser whose notice was lost is announced at its next "
            "sign-in; a silent server is waited for once (EMAIL_TIMEOUT), then "
            "every request skips it for 30 s",
        ),
    },
    "Disk full": {
        "disk-full": (
            "Saving avatars, identity documents and other files on a file "
            "system with no room left (and other failed writes)",
            "Refused in words, the partial file (only the one this save made) "
            "removed, the row unchanged; other errors raised as themselves",
        ),
    },
    "Processes killed": {
        "instance-stopped": (
            "One gunicorn instance behind nginx stopped during traffic",
            "Only the requests in flight on it fail, exactly those nginx logged as 502",
        ),
        "instance-killed": (
            "App instances killed (SIGKILL) behind nginx during orders and uploads",
            "Every request through nginx answered, but for an answer the killed "
            "instance was already sending (nginx has passed its start on and "
            "cannot send it again); every order the clients were "
            "told was accepted exists and is matched; an order cut by the kill "
            "placed again places nothing; no avatar row lacks its object; the "
            "ledger balances",
        ),
        "matcher-killed": (
            "`run_matcher` killed in the middle of a batch; a second matcher "
            "started for the same market",
            "Nothing lost or repeated; the second waits for the lock and takes "
            "over when the first dies",
        ),
        "matcher-batch-rolled-back": (
            "PostgreSQL aborts a matcher's batch (a deadlock with another connection)",
            "Only that market's batch is matched again, from the database; the "
            "other markets go on and every market lock is kept",
        ),
        "matcher-write-failed": (
            "A matcher's batch write fails in PostgreSQL (a trigger raises) "
            "while the next batch is already matched, or a command cannot be "
            "applied",
            "The failed batch is retried one command at a time, the one "
            "matched ahead is thrown away and matched again: nothing lost or "
            "applied twice, time priority in acceptance order; a command that "
            "fails again is refused alone, and its refusal published once "
            "committed",
        ),
        "decoder-killed": (
            "A process holding image-decode slots killed",
            "Its slots are freed; uploads are not blocked",
        ),
    },
    "Hostile input": {
        "nul-bytes": (
            "NUL bytes in paths, queries, form fields, JSON, the log-in name and "
            "the session cookie (and in an uploaded file)",
            "404/400 in the right format, nothing saved, nobody signed in; file "
            "contents are not refused",
        ),
        "deep-json": (
            "JSON nested 100,000 deep (an order, bare brackets)",
            "A JSON 400 before Python's recursion limit; nesting up to the "
            "limit is read",
        ),
        "huge-bodies": (
            "Bodies over the limit (60 MB, to the test client and to gunicorn), "
            "chunked bodies, too many form or query fields",
            "413/411/400 before the body is read, JSON on the API, nothing "
            "placed; a body at the limit is read",
        ),
        "malformed-requests": (
            "Malformed JSON, bodies of another type, wrong methods, unknown API "
            "paths, fields of the wrong JSON type, empty or impossible query "
            "values, options that do not go together, an uncaught exception, "
            "admin actions on rows named by keys that are none (`abc`, 20 digits), "
            "admin list filters typed into the address that cannot run "
            "(`__year=10000`, `__regex=(`, a number PostgreSQL cannot hold), "
            "page cursors naming no page or no row",
            'The right status with a stable `{"error": {code, message}}` on '
            "the API, the site's error page elsewhere; the admin's list with a "
            "warning, nothing changed, or unfiltered (Django's `?e=1`)",
        ),
        "options": (
            "OPTIONS on public and private endpoints, with and without credentials",
            "A description of the endpoint; 401 JSON without credentials on "
            "a private one",
        ),
        "hostile-paths": (
            "Media and storage names with traversal, absolute paths, links out "
            "of the folder, hidden files, odd names, listing `..`; the store's "
            "own location",
            "404 without touching the store; the storage refuses them in every "
            "method; the store is not reachable from outside",
        ),
        "api-fuzzing": (
            "Schemathesis generates requests and stateful sequences for every "
            "API operation (with a key that trades and withdraws) against "
            "gunicorn and the matcher",
            "Every answer is one the published schema allows; no server error",
        ),
        "stream-clients": (
            "Live-stream clients that stop reading, or resume from an unknown, "
            "old or future position, or one not in ASCII digits",
            "A slow one is told to resync and disconnected; an unknown position "
            "gets a fresh snapshot, a known one catches up",
        ),
        "shared-redis": (
            "Another exchange sharing the Redis server on another database "
            "number, trading the same market for the same user ids",
            "None of its events reaches this exchange's live streams",
        ),
        "hostile-addresses": (
            "Withdrawal addresses of the wrong network, with typos, empty or too "
            "long; catastrophic regular expressions as address formats; a new "
            "address under the saved-only setting",
            "Refused saying what is wrong, nothing written; matched by RE2 in "
            "time linear in the address whatever the pattern; a pattern Python "
            "or RE2 cannot compile, too large, or with nested repetition "
            "refused when saved; the setting's delays hold",
        ),
    },
    "Hostile uploads": {
        "upload-bombs": (
            "Decompression bombs: huge declared dimensions, highly compressed "
            "images, 16-bit RGBA, progressive JPEG and WebP decode costs, a "
            "JPEG repeating one scan thousands of times, a PDF costly to parse",
            "Refused from the header before decoding, in words",
        ),
        "upload-types": (
            "SVG with script, HTML, PDF or text named .jpg, formats not allowed, "
            "a forged content type, a PDF hiding scripts behind name escapes or "
            "in object streams",
            "Refused naming the allowed formats; the stored content type "
            "follows the content, never the name or the upload's claim",
        ),
        "upload-huge": (
            "Uploads over the byte limit, unseekable streams, very large photos "
            "and logos (also through the browser)",
            "Refused before reading, nothing buffered beyond the limit; large "
            "real photos are reduced and stored",
        ),
        "upload-broken": (
            "Truncated images, broken ICC profiles, trailing payloads, "
            "metadata, EXIF with a tag of the wrong type, animations",
            "Refused or re-encoded: no payload or metadata survives",
        ),
        "upload-slots": (
            "Uploads arriving while every decode slot is taken",
            "Wait briefly, then refused with nothing stored",
        ),
        "upload-served": (
            "A stored non-image requested as media",
            "Served as a download, never rendered; output names are safe",
        ),
        "private-documents": (
            "Reaching identity documents by media paths, the public bucket "
            "policy, anonymous requests, expired links, staff without the "
            "permission",
            "Refused every way; opening needs the permission and is recorded",
        ),
    },
    "Access control": {
        "access-by-id": (
            "Another user's order, withdrawal, saved address, API key or session "
            "by id, on every private URL that takes one (web and API, every "
            "method), and in lists and the live stream",
            "404 (or not listed); the object is unchanged",
        ),
        "access-withdrawn": (
            "A live stream held open after its API key is revoked, its session "
            "ended elsewhere or its account disabled, busy or idle",
            "None of the user's events (orders, fills, balances) goes out after "
            "it; the stream ends with `resync` `revoked` within a heartbeat "
            "(15 s); reconnecting is refused (401) or signed out",
        ),
        "access-anonymous": (
            "Private pages and API endpoints without signing in",
            "Redirect to log-in on pages, 401 JSON on the API",
        ),
        "access-staff": (
            "The admin without staff status, without a second factor, without "
            "the permission; editing money records; staff posting another "
            "staff account's password to the admin's log-in form",
            "Refused; money records are read-only; the session stays theirs",
        ),
        "access-unverified": (
            "Ordering or withdrawing before the e-mail address is verified",
            "Refused (`email_unverified`, 403 on the API)",
        ),
    },
    "CSRF": {
        "csrf-forms": (
            "Every POST form the site shows (found by reading the pages, "
            "signed in and anonymous) posted without its token",
            "Each form carries a token; without it 403 and nothing changes",
        ),
        "csrf-api": (
            "API writes with a session but no CSRF token",
            "Refused; with the token, or with an API key, accepted",
        ),
    },
    "Open redirects": {
        "open-redirect": (
            "`next` pointing elsewhere (`https://`, `//`, `/\\`, `javascript:`, "
            "user@host) when signing in, up and out and confirming the password",
            "The redirect stays on the site, and the action still happens",
        ),
        "open-redirect-media": (
            "Stored names like `//evil.com` and `\\evil.com`; redirect "
            "locations handed to nginx",
            "URLs stay under the media URL; only locations nginx could have are "
            "accepted",
        ),
    },
    "XSS": {
        "xss-fields": (
            'Markup (`"><script>`) in every field a user controls: API key '
            "name, browser (user agent) of a session, saved address and its "
            "label, withdrawal address, staff's rejection reason",
            "Shown escaped on the owner's pages, staff's admin pages and in "
            "the HTML mails",
        ),
        "xss-reflected": (
            "Markup in the token search and in market and token URLs",
            "Never reflected as markup",
        ),
        "xss-policy": (
            "Inline script on any page (and a page made to break the policy)",
            "Every page carries a Content-Security-Policy without "
            "`unsafe-inline`; the browser reports no violation",
        ),
    },
    "Number abuse": {
        "number-abuse": (
            "Amounts that are NaN, infinite, negative, zero, 10^40, 1e400, finer "
            "than the market or token, hexadecimal, with a decimal comma, floats "
            "or booleans, through the API, the web forms, the services and the "
            "admin; with '_' between digits or in another script's digits",
            "Refused (400 on the API, a message in the forms), never rounded; "
            "nothing placed, requested or locked. '1_000' and other scripts' "
            "digits are refused by the API and read as the number they write "
            "by the web forms (as Django's number fields read them)",
        ),
        "overdraw": (
            "Orders, amendments and withdrawals beyond the available balance "
            "or the daily limit, and funds already locked",
            "Refused whole, in words; balances unchanged",
        ),
    },
    "Concurrency": {
        "race-withdrawals": (
            "Concurrent withdrawals of the full balance, over the daily limit, "
            "and repeats of one reference (threads with a barrier)",
            "Exactly what fits goes through; the amount is locked once",
        ),
        "race-orders": (
            "Concurrent orders over the balance, repeats of one client order "
            "id, many traders on two markets, random orders against a reference "
            "engine",
            "Exactly one goes through; one order per id; no deadlock; books "
            "and balances exact",
        ),
        "race-cancel": (
            "A cancel racing a fill, an amendment racing a fill, a cancel "
            "racing staff starting to send, double cancels",
            "Exactly one outcome, funds released once",
        ),
        "race-deposits": (
            "Concurrent credits of one deposit reference, by the service or by "
            "two staff in the admin",
            "Credited once; one of the staff is told it was credited and it is "
            "logged once, the other is told nothing was credited",
        ),
        "race-uploads": (
            "Concurrent first saves and uploads by one user with a removal",
            "All saved without collision; no unreferenced object left",
        ),
        "race-user-limits": (
            "API keys, or withdrawal addresses, added at once by one user near "
            "the limit of active keys or of the address book; an order placed "
            "while its user creates a key",
            "No more than the limit made; the others refused saying to revoke "
            "or remove one; the order is placed and matched meanwhile",
        ),
        "race-notices": (
            "One security notice raised several times at once: a withdrawal "
            "repeated with its reference, sign-ins from one new browser",
            "Logged once and mailed once",
        ),
        "race-admin": (
            "Two staff add one token, market, address format or user at once, "
            "both past the form's checks (and the services called twice at "
            "once); two save one token at once (a rename and a new logo, two "
            "new logos); a profile saved in the admin, or a picture uploaded "
            "there, while its user uploads one; a user deleted while a deposit "
            "is credited to them",
            "One is added, the other gets the form back with the usual "
            "“already exists” error, never a 500; each save keeps what the "
            "other changed; no logo or picture left unreferenced, none "
            "referenced but deleted; the user is kept, and staff told nothing "
            "was deleted",
        ),
        "race-signup": (
            "Two visitors sign up at once with one username (also in another "
            "case) or one e-mail address, both past the form's checks",
            "One account is made, the other gets the sign-up form back with "
            "allauth's usual “already registered” error, never a 500 nor a "
            "second account",
        ),
    },
    "API key abuse": {
        "key-invalid": (
            "Wrong, malformed, revoked and expired keys, the key of a disabled "
            "account (also on the live stream)",
            "401 JSON; a revoked key stays revoked",
        ),
        "key-scope": (
            "A read key trading or withdrawing, a trade key withdrawing, "
            "unknown scopes, too many keys",
            "403 (`withdraw` never implied, always needs an allow-list); "
            "refused when made",
        ),
        "key-address": (
            "A key used from outside its allow-list, a forged "
            "`X-Forwarded-For`, a malformed allow-list (also on the live stream)",
            "403 `ip_not_allowed`; the header counts only behind a trusted "
            "proxy; the list is refused naming the entry",
        ),
        "key-signature": (
            "A signing key's request replayed (to another worker, while Redis "
            "is paused or down, or two copies at once), with a changed body or "
            "query, a stale timestamp, its bare secret, or a timestamp or "
            "signature that is not digits or hex (400 digits, Arabic digits, `é`)",
            "Refused; signatures past their window are forgotten",
        ),
        "key-stored": (
            "Reading keys back from the database or the page after creation",
            "Only a digest is stored; the key is shown once, uncached; a "
            "password change offers to revoke every key",
        ),
    },
    "Throttles": {
        "throttle-login": (
            "Password guessing per account and per address, with varied host "
            "and login names, across two instances and behind proxies; "
            "probing usernames through sign-up",
            "Refused before a password is hashed, even the right password, "
            "until the window passes; the form says when",
        ),
        "throttle-uploads": (
            "Bursts of uploads from one user (and through nginx)",
            "Refused before decoding; refused uploads count; per user, ends "
            "with its window",
        ),
    },
    "Sign-in and second factor": {
        "auth-links": (
            "Tampered, expired and reused password-reset and verification links",
            "Refused; the password and the address stay as they were",
        ),
        "auth-codes": (
            "Wrong and replayed TOTP codes, a recovery code used twice, a wrong "
            "password, wrong codes spread over many addresses",
            "Refused, nobody signed in, the failure logged; the account's lock "
            "counts codes from every address",
        ),
        "auth-reauth": (
            "Sensitive actions (withdrawals, API keys, address book) without "
            "confirming the password or code; the removed backend's sessions",
            "The password or code is asked first; a wrong one creates nothing",
        ),
    },
    "Logs and probes": {
        "log-injection": (
            "Newlines, NUL and control characters in paths, headers, messages "
            "and tracebacks",
            "Every event stays on its one line, escaped, in the access log and "
            "the app's",
        ),
        "log-secrets": (
            "Refused credentials and a whole topology run; a production start "
            "without a real secret key",
            "No secret in any log; no Server header; start-up refused",
        ),
        "probes": (
            "Liveness and readiness with the database, cache, store or matcher "
            "failing, behind the HTTPS redirect",
            "Liveness touches nothing; readiness answers 503 naming the failing "
            "check (not the bucket), reports queue age; probes are not "
            "redirected",
        ),
    },
    "Outcome-unknown answers": {
        "outcome-unknown": (
            "The connection lost at an order's or a withdrawal's write or "
            "COMMIT (API and web forms, with and without a client id)",
            "503 `outcome_unknown` saying what to check and that repeating with "
            "the same id is safe; the form offers to send it again; without an "
            "id it warns of a second order",
        ),
        "outcome-repeat": (
            "Repeating an order, withdrawal or deposit with the same id (an "
            "order also after it was shrunk or amended), and a different "
            "request under a used id",
            "The first is returned and nothing else done; a different one is refused",
        ),
        "outcome-late-matcher": (
            "The matcher late or a command visible late",
            "The answer is `accepted` (202 with the order's `url`); the command "
            "is still taken in order",
        ),
    },
}


def attempts() -> dict[str, tuple[str, str, str]]:
    """Every row by id: (area, what is tried, what the tests assert)."""
    found: dict[str, tuple[str, str, str]] = {}
    for area, rows in AREAS.items():
        for attempt, (tried, result) in rows.items():
            if attempt in found:
                raise ValueError(f"reliability id {attempt!r} is in two areas")
            found[attempt] = (area, tried, result)
    return found


class Collector:
    """A pytest plugin noting, for every collected test, the ids it carries."""

    def __init__(self) -> None:
        self.tests: dict[str, dict[str, str]] = {}

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        test = item.nodeid.split("[", 1)[0]
        note = "PostgreSQL" if item.get_closest_marker("postgres") else ""
        for marker in item.iter_markers("reliability"):
            for attempt in marker.args:
                self.tests.setdefault(attempt, {})[test] = note


def collect() -> dict[str, dict[str, str]]:
    """Collect the suite (nothing runs): {id: {test node id: notes}}."""
    collector = Collector()
    os.chdir(ROOT)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = pytest.main(
            ["--collect-only", "-q", "-p", "no:cacheprovider"], plugins=[collector]
        )
    if code != pytest.ExitCode.OK:
        print(output.getvalue(), file=sys.stderr)
        raise SystemExit(f"collecting the suite failed (pytest exit code {code})")
    return collector.tests


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(tests: dict[str, dict[str, str]]) -> str:
    known = attempts()
    problems = [
        f"{test}: unknown reliability id {attempt!r}"
        for attempt, marked in sorted(tests.items())
        if attempt not in known
        for test in marked
    ] + [
        f"reliability id {attempt!r} has no test: mark one or remove the row"
        for attempt in known
        if not tests.get(attempt)
    ]
    if problems:
        raise ValueError("\n".join(problems))
    lines = [INTRO.format(command=COMMAND)]
    for area, rows in AREAS.items():
        lines += [
            f"## {area}",
            "",
            "| What is tried | What the tests assert | Tests |",
            "|---|---|---|",
        ]
        for attempt, (tried, result) in rows.items():
            names = [
                f"`{test}`" + (f" ({note})" if note else "")
                for test, note in sorted(tests[attempt].items())
            ]
            lines.append(f"| {cell(tried)} | {cell(result)} | {'<br>'.join(names)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    try:
        report = render(collect())
    except ValueError as problems:
        print(problems, file=sys.stderr)
        return 1
    if "--check" not in argv:
        REPORT.write_text(report)
        print(f"wrote {REPORT.relative_to(ROOT)}")
        return 0
    current = REPORT.read_text() if REPORT.exists() else ""
    if current == report:
        return 0
    diff = difflib.unified_diff(
        current.splitlines(),
        report.splitlines(),
        "docs/RELIABILITY.md",
        "what the suite gives",
        lineterm="",
    )
    print("\n".join(diff), file=sys.stderr)
    print(f"docs/RELIABILITY.md is out of date: run `{COMMAND}`.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
