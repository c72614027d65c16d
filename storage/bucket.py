"""Bucket bootstrap shared by MinIOStorage and the setup_minio command."""

from __future__ import annotations

import json
import re

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error, ServerError
from minio.lifecycleconfig import (
    AbortIncompleteMultipartUpload,
    LifecycleConfig,
    Rule,
)

from storage.config import (
    PRIVATE_MEDIA_PREFIX,
    PUBLIC_MEDIA_FILES,
    PUBLIC_MEDIA_PREFIXES,
)

# The statement ``public`` mode sets: the only part of the bucket policy this
# project owns, replaced or removed by id; every other one is the operator's.
PUBLIC_READ_SID = "PublicReadMedia"
# The lifecycle rule setup_minio sets, the only one this project owns: a
# multipart upload left unfinished is aborted, its parts deleted, a day after
# it began (the shortest a rule can say; an upload takes seconds).
ABORT_UPLOADS_RULE_ID = "AbortUnfinishedUploads"
ABORT_UPLOADS_AFTER_DAYS = 1
# A store that takes no such rule: MinIO answers MalformedXML (it knows no
# AbortIncompleteMultipartUpload, and aborts uploads left for 24 h by itself),
# others have no lifecycle API, or the key may not set one.
_LIFECYCLE_REFUSED_CODES = (
    "MalformedXML",
    "NotImplemented",
    "InvalidRequest",
    "MethodNotAllowed",
    "AccessDenied",
)


class NotAnS3Api(ServerError):
    """A success answer that no S3 API gives.

    MINIO_ENDPOINT on another web server (MinIO's console port, a proxy's
    page) that answers 200 to every method: the minio client takes any 2xx as
    success. A minio ``ServerError``, so that ``MinIOStorage.errors`` turns it
    into ``StorageUnavailable`` with the hint to check MINIO_ENDPOINT.
    """

    def __init__(self, answer: str) -> None:
        super().__init__(f"{answer}: the endpoint does not look like an S3 API", 200)


class BucketPolicyUnsafe(Exception):
    """The bucket policy lets anyone, without credentials, reach private files
    (identity documents). Raised before anything is changed; the message
    names each statement to remove."""


def public_read_policy(bucket_name: str) -> dict:
    """Anonymous GetObject on the media prefixes only: no listing, no writes."""
    resources = [
        f"arn:aws:s3:::{bucket_name}/{prefix}*" for prefix in PUBLIC_MEDIA_PREFIXES
    ]
    resources += [f"arn:aws:s3:::{bucket_name}/{name}" for name in PUBLIC_MEDIA_FILES]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": PUBLIC_READ_SID,
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": resources,
            }
        ],
    }


def bucket_exists(*, client: Minio, bucket_name: str) -> bool:
    """Whether the bucket exists, asked with a listing, whose answer only an S3
    API gives: a web server answering 200 to everything (MinIO's console)
    passes the client's ``bucket_exists``, a HEAD, and every later lookup
    seems to find an object. Under ``MinIOStorage.errors`` such an answer is
    ``NotAnS3Api``. The listing is of the default avatar's name: a key or two.
    """
    try:
        listing = client.list_objects(
            bucket_name=bucket_name, prefix=PUBLIC_MEDIA_FILES[0]
        )
        next(iter(listing), None)
    except S3Error as exc:
        if exc.code != "NoSuchBucket":
            raise
        return False
    return True


def bucket_ensure(*, client: Minio, bucket_name: str, url_mode: str) -> bool:
    """Create the bucket if missing; return True when this call created it.

    Another app server may create it at the same moment: its
    BucketAlreadyOwnedByYou / BucketAlreadyExists counts as success. A new
    bucket in ``public`` mode gets the anonymous-read policy straight away, so
    that the first uploaded image is already visible.
    """
    try:
        client.make_bucket(bucket_name=bucket_name)
    except S3Error as exc:
        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        return False
    if url_mode == "public":
        # A bucket just made has no policy: no statement of the operator's.
        policy = public_read_policy(bucket_name)
        client.set_bucket_policy(bucket_name=bucket_name, policy=json.dumps(policy))
    return True


def bucket_policy_apply(*, client: Minio, bucket_name: str, url_mode: str) -> str:
    """Make the bucket policy match the URL mode; return what was done.

    Only this project's statement (``PUBLIC_READ_SID``) is touched: set in
    ``public`` mode, removed in the others, which need a private bucket. The
    operator's statements are kept, unless one lets anyone reach private
    files: then ``BucketPolicyUnsafe`` names it, in every mode, and nothing is
    changed.
    """
    current = _policy_get(client, bucket_name)
    statements = _statements(current) if current is not None else []
    others = [
        (position, statement)
        for position, statement in enumerate(statements, start=1)
        if not _is_ours(statement, bucket_name)
    ]
    unsafe = [
        (position, statement, access)
        for position, statement in others
        if (access := _private_access(statement, bucket_name))
    ]
    if unsafe:
        raise BucketPolicyUnsafe(_unsafe_message(bucket_name, unsafe))
    kept = [statement for _position, statement in others]
    kept_text = ""
    if others:
        names = ", ".join(_label(statement, position) for position, statement in others)
        kept_text = (
            f"; kept {len(others)} statement(s) setup_minio did not set, none "
            f"reaching {PRIVATE_MEDIA_PREFIX}: {names} (review them)"
        )
    if url_mode == "public":
        wanted = {
            "Version": "2012-10-17",
            "Statement": [*kept, *public_read_policy(bucket_name)["Statement"]],
        }
        if current is None or _canonical(statements) != _canonical(wanted["Statement"]):
            client.set_bucket_policy(bucket_name=bucket_name, policy=json.dumps(wanted))
        granted = ", ".join(PUBLIC_MEDIA_PREFIXES + PUBLIC_MEDIA_FILES)
        return f"anonymous read (GetObject only) on {granted}{kept_text}"
    if current is None:
        return "private (no bucket policy)"
    if len(kept) == len(statements):
        return f"private (no anonymous-read statement of setup_minio){kept_text}"
    if kept:
        remaining = {"Version": current.get("Version", "2012-10-17"), "Statement": kept}
        client.set_bucket_policy(bucket_name=bucket_name, policy=json.dumps(remaining))
        return f"private (removed the anonymous-read statement){kept_text}"
    client.delete_bucket_policy(bucket_name=bucket_name)
    return "private (removed the anonymous-read policy)"


def _policy_get(client: Minio, bucket_name: str) -> dict | None:
    try:
        text = client.get_bucket_policy(bucket_name=bucket_name)
    except S3Error as exc:
        if exc.code not in ("NoSuchBucketPolicy", "NoSuchPolicy"):
            raise
        return None
    return _policy_parse(text)


def _policy_parse(text: str) -> dict:
    try:
        policy = json.loads(text)
    except ValueError:
        policy = None
    if not isinstance(policy, dict):
        raise NotAnS3Api("it answered with a bucket policy that is not JSON")
    return policy


def _statements(policy: dict) -> list[dict]:
    found = policy.get("Statement", [])
    found = [found] if isinstance(found, dict) else found
    if not isinstance(found, list) or not all(isinstance(s, dict) for s in found):
        raise NotAnS3Api("it answered with a bucket policy S3 would not accept")
    return found


def _listed(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _is_ours(statement: dict, bucket_name: str) -> bool:
    """The statement public mode sets, by its id, or by its grant on a server
    that does not keep ids."""
    if statement.get("Sid"):
        return statement["Sid"] == PUBLIC_READ_SID
    [ours] = public_read_policy(bucket_name)["Statement"]
    return all(
        sorted(_listed(statement.get(key))) == sorted(_listed(ours[key]))
        for key in ("Effect", "Action", "Resource")
    )


def _canonical(statements: list[dict]) -> list[str]:
    """The statements as comparable text: the server may write a list of one
    as a string, "*" for {"AWS": ["*"]}, an empty Sid, another order."""

    def canonical(statement: dict) -> dict:
        found = {}
        for key, value in statement.items():
            if key in ("Action", "NotAction", "Resource", "NotResource"):
                value = sorted(_listed(value))
            elif key in ("Principal", "NotPrincipal"):
                value = {"AWS": "*"} if value == "*" else value
                if isinstance(value, dict):
                    value = {name: sorted(_listed(v)) for name, v in value.items()}
            elif key == "Sid" and not value:
                continue
            found[key] = value
        return found

    return sorted(json.dumps(canonical(s), sort_keys=True) for s in statements)


# What anonymous access to an object action on a private key gives away.
_PRIVATE_OBJECT_ACTIONS = {
    "s3:GetObject": "read",
    "s3:GetObjectVersion": "read",
    "s3:PutObject": "overwrite",
    "s3:DeleteObject": "delete",
    "s3:DeleteObjectVersion": "delete",
}
# Listing the bucket names every key, identity documents' included.
_LISTING_ACTIONS = ("s3:ListBucket", "s3:ListBucketVersions")


def _private_access(statement: dict, bucket_name: str) -> list[str]:
    """What the statement lets anyone without credentials do to private files
    (read, overwrite, delete, list); empty when nothing.

    Conditions are not weighed (a Referer or an address is easy to claim or
    to get wrong), except the ``s3:prefix`` a listing is limited to, as
    ``mc anonymous set download ALIAS/bucket/profile_pics`` sets; nor is a
    Deny statement elsewhere: the statement must not reach private files
    itself.
    """
    if statement.get("Effect") != "Allow" or not _anonymous(statement):
        return []
    private_keys = f"arn:aws:s3:::{bucket_name}/{PRIVATE_MEDIA_PREFIX}"
    found = [
        what
        for action, what in _PRIVATE_OBJECT_ACTIONS.items()
        if _allows(statement, "Action", action)
        and _reaches_names_under(statement, private_keys)
    ]
    if (
        any(_allows(statement, "Action", action) for action in _LISTING_ACTIONS)
        and _allows(statement, "Resource", f"arn:aws:s3:::{bucket_name}")
        and _listing_reaches_private(statement)
    ):
        found.append("list")
    return list(dict.fromkeys(found))


def _anonymous(statement: dict) -> bool:
    if "NotPrincipal" in statement:
        return True  # everyone but the principals named
    principal = statement.get("Principal")
    if principal == "*":
        return True
    return isinstance(principal, dict) and any(
        "*" in _listed(value) for value in principal.values()
    )


def _allows(statement: dict, element: str, value: str) -> bool:
    """Whether ``element`` ("Action" or "Resource") of the statement, or its
    ``Not`` form, covers ``value``."""
    ignore_case = element == "Action"  # action names are case-insensitive
    if element in statement:
        patterns = _listed(statement[element])
        return any(_glob(p, ignore_case).fullmatch(value) for p in patterns)
    patterns = _listed(statement.get(f"Not{element}"))
    if f"Not{element}" in statement:
        return not any(_glob(p, ignore_case).fullmatch(value) for p in patterns)
    return False


def _reaches_names_under(statement: dict, prefix: str) -> bool:
    """Whether the statement's resources take in some name under ``prefix``."""
    if "Resource" in statement:
        return any(
            _matches_a_name_under(p, prefix) for p in _listed(statement["Resource"])
        )
    if "NotResource" in statement:
        excluded = _listed(statement["NotResource"])
        return not any(_matches_every_name_under(p, prefix) for p in excluded)
    return False


def _listing_reaches_private(statement: dict) -> bool:
    """Whether a listing the statement allows may name private keys: any,
    unless its only condition limits ``s3:prefix`` to prefixes outside them."""
    condition = statement.get("Condition")
    if not condition:
        return True
    equals = condition.get("StringEquals") if isinstance(condition, dict) else None
    if (
        len(condition) != 1
        or not isinstance(equals, dict)
        or list(equals) != ["s3:prefix"]
    ):
        return True
    return any(
        not isinstance(prefix, str)
        or prefix.startswith(PRIVATE_MEDIA_PREFIX)
        or PRIVATE_MEDIA_PREFIX.startswith(prefix)
        for prefix in _listed(equals["s3:prefix"])
    )


def _glob(pattern: str, ignore_case: bool = False) -> re.Pattern:
    """A policy pattern (``*`` any run of characters, ``?`` one) as a regex."""
    body = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char)
        for char in pattern
    )
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _matches_a_name_under(pattern: str, prefix: str) -> bool:
    """Whether ``pattern`` matches some name that starts with ``prefix`` and
    goes on: ``prefix`` is read through the pattern, every place it may have
    reached kept; a place before the end can go on to a longer name."""

    def with_stars_skipped(places: set[int]) -> set[int]:
        found = set()
        for place in places:
            while place not in found:
                found.add(place)
                if place == len(pattern) or pattern[place] != "*":
                    break
                place += 1
        return found

    places = with_stars_skipped({0})
    for char in prefix:
        places = with_stars_skipped(
            {
                place + (pattern[place] != "*")
                for place in places
                if place < len(pattern) and pattern[place] in ("*", "?", char)
            }
        )
    return any(place < len(pattern) for place in places)


def _matches_every_name_under(pattern: str, prefix: str) -> bool:
    """Whether ``pattern`` surely matches every name starting with ``prefix``:
    it ends with ``*`` and the rest matches the start of ``prefix``."""
    if not pattern.endswith("*"):
        return False
    start = _glob(pattern[:-1])
    return any(start.fullmatch(prefix[:end]) for end in range(len(prefix) + 1))


def _label(statement: dict, position: int) -> str:
    sid = statement.get("Sid")
    return f"'{sid}'" if sid else f"statement {position}"


def _unsafe_message(bucket_name: str, unsafe: list[tuple[int, dict, list[str]]]) -> str:
    lines = "\n".join(
        f"  {_label(statement, position)} lets anyone {' and '.join(access)}: "
        f"{json.dumps(statement)}"
        for position, statement, access in unsafe
    )
    granted = ", ".join(PUBLIC_MEDIA_PREFIXES + PUBLIC_MEDIA_FILES)
    return (
        f"The bucket policy of '{bucket_name}' lets anyone, without credentials, "
        f"reach the identity documents under {PRIVATE_MEDIA_PREFIX}, which must "
        f"stay private in every URL mode:\n{lines}\n"
        f"Remove {'that statement' if len(unsafe) == 1 else 'those statements'} "
        "from the bucket policy (`mc anonymous set none ALIAS/"
        f"{bucket_name}` removes the whole policy; in public mode this command "
        f"then grants anonymous read of {granted} alone) and run this again. "
        "Nothing was changed."
    )


def bucket_lifecycle_apply(*, client: Minio, bucket_name: str) -> str:
    """Have the store abort multipart uploads left unfinished; return what
    was done.

    The client sends a file over 5 MiB in parts; cut in the middle (the app
    killed, the store unreachable) the parts stay in the bucket, listed
    nowhere, until the upload is aborted: for an identity document, pieces of
    someone's ID. MinIO and SeaweedFS abort such uploads after 24 h by
    themselves; AWS S3 and others keep them until a lifecycle rule says so.

    The rule (``ABORT_UPLOADS_RULE_ID``) is written only to a bucket with no
    lifecycle rule of the operator's: the client reads rules into a model
    that drops what it does not know (a rule's old-style prefix, a size
    filter), and writing them back would widen them, an expiration meant for
    one folder applied to the whole bucket. Such rules are kept as they are,
    and the answer says whether one of them aborts unfinished uploads. A store
    that refuses the rule does not fail the setup: the answer says so.
    """
    try:
        current = client.get_bucket_lifecycle(bucket_name=bucket_name)
    except S3Error as exc:
        if exc.code not in _LIFECYCLE_REFUSED_CODES:
            raise
        return _lifecycle_refused(exc.code)
    except ValueError:  # a rule the client cannot read (an empty filter)
        return (
            "the bucket has lifecycle rules this client cannot read, kept as "
            "they are: check that one aborts unfinished multipart uploads "
            "(docs/STORAGE.md)"
        )
    rules = current.rules if current is not None else []
    others = [rule for rule in rules if rule.rule_id != ABORT_UPLOADS_RULE_ID]
    if others:
        return _lifecycle_kept(others)
    wanted = Rule(
        ENABLED,
        rule_filter=Filter(prefix=""),
        rule_id=ABORT_UPLOADS_RULE_ID,
        abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(
            days_after_initiation=ABORT_UPLOADS_AFTER_DAYS
        ),
    )
    if rules != [wanted]:
        try:
            client.set_bucket_lifecycle(
                bucket_name=bucket_name, config=LifecycleConfig([wanted])
            )
        except S3Error as exc:
            if exc.code not in _LIFECYCLE_REFUSED_CODES:
                raise
            return _lifecycle_refused(exc.code)
    return (
        f"unfinished multipart uploads aborted after {ABORT_UPLOADS_AFTER_DAYS} "
        f"day (lifecycle rule {ABORT_UPLOADS_RULE_ID})"
    )


def _lifecycle_refused(code: str) -> str:
    return (
        f"the store refused a lifecycle rule ({code}): parts of unfinished "
        "multipart uploads stay until the store removes them (MinIO and "
        "SeaweedFS do after 24 h; see docs/STORAGE.md for others)"
    )


def _lifecycle_kept(rules: list[Rule]) -> str:
    labels = [
        f"'{rule.rule_id}'" if rule.rule_id else f"rule {position}"
        for position, rule in enumerate(rules, start=1)
    ]
    kept = (
        f"kept {len(rules)} lifecycle rule(s) setup_minio did not set: "
        f"{', '.join(labels)}"
    )
    aborting = [
        f"{label} after {rule.abort_incomplete_multipart_upload.days_after_initiation}"
        " day(s)"
        for label, rule in zip(labels, rules, strict=True)
        if rule.status == ENABLED and rule.abort_incomplete_multipart_upload
    ]
    if not aborting:
        return (
            f"{kept}; none aborts unfinished multipart uploads, whose parts "
            "stay: add AbortIncompleteMultipartUpload to them (docs/STORAGE.md)"
        )
    return (
        f"{kept}; unfinished multipart uploads aborted by {', '.join(aborting)} "
        f"(check that it covers {PRIVATE_MEDIA_PREFIX})"
    )
