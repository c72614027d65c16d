"""setup_minio and the bucket policy it finds: the operator's statements are
kept, none may make identity documents public, in any URL mode; and the
lifecycle rule that has the store abort unfinished multipart uploads."""

import io
import json
import urllib.error
import urllib.request

import pytest
from django.core.management import CommandError, call_command
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error
from minio.lifecycleconfig import (
    AbortIncompleteMultipartUpload,
    Expiration,
    LifecycleConfig,
    Rule,
)

from conftest import S3_ACCESS_KEY, S3_SECRET_KEY, storages_setting

PASSPORT = "private/identity/7/passport.jpg"


@pytest.fixture
def setup_in_mode(settings, minio_options):
    """setup_minio as the app runs it, in one URL mode: (stdout, error)."""

    def run(url_mode: str) -> tuple[str, CommandError | None]:
        settings.USE_MINIO = True
        settings.STORAGES = storages_setting(
            {
                "BACKEND": "storage.backends.MinIOStorage",
                "OPTIONS": {**minio_options, "url_mode": url_mode},
            }
        )
        out = io.StringIO()
        try:
            call_command("setup_minio", stdout=out, stderr=io.StringIO())
        except CommandError as error:
            return out.getvalue(), error
        return out.getvalue(), None

    return run


@pytest.fixture
def bucket(s3_client, bucket_name) -> str:
    """The bucket, made by the operator before setup_minio ran, holding an
    identity document."""
    s3_client.make_bucket(bucket_name=bucket_name)
    s3_client.put_object(
        bucket_name=bucket_name,
        object_name=PASSPORT,
        data=io.BytesIO(b"\xff\xd8\xffSECRET"),
        length=9,
    )
    return bucket_name


def policy_set(s3_client, bucket_name: str, *statements: dict) -> None:
    policy = {"Version": "2012-10-17", "Statement": list(statements)}
    s3_client.set_bucket_policy(bucket_name=bucket_name, policy=json.dumps(policy))


def statements_of(s3_client, bucket_name: str) -> dict[str, dict]:
    policy = json.loads(s3_client.get_bucket_policy(bucket_name=bucket_name))
    return {statement.get("Sid", ""): statement for statement in policy["Statement"]}


def anonymous_status(s3_server, bucket_name: str, key: str) -> int:
    try:
        with urllib.request.urlopen(f"{s3_server.url}/{bucket_name}/{key}") as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def anyone(bucket_name: str, actions: list[str], resource: str, **more) -> dict:
    return {
        "Effect": "Allow",
        "Principal": {"AWS": ["*"]},
        "Action": actions,
        "Resource": [f"arn:aws:s3:::{bucket_name}{resource}"],
        **more,
    }


# What `mc anonymous set download ALIAS/bucket` sets.
def download_all(bucket_name: str) -> list[dict]:
    return [
        anyone(bucket_name, ["s3:GetBucketLocation", "s3:ListBucket"], ""),
        anyone(bucket_name, ["s3:GetObject"], "/*"),
    ]


def cdn_static(bucket_name: str) -> dict:
    return {"Sid": "CdnStatic", **anyone(bucket_name, ["s3:GetObject"], "/static/*")}


@pytest.mark.reliability("private-documents")
@pytest.mark.parametrize("url_mode", ["public", "presigned", "proxy"])
def test_a_policy_letting_anyone_download_the_bucket_fails_setup_naming_it(
    setup_in_mode, bucket, s3_client, url_mode
):
    policy_set(s3_client, bucket, *download_all(bucket))
    before = s3_client.get_bucket_policy(bucket_name=bucket)

    out, error = setup_in_mode(url_mode)

    assert error is not None
    assert "lets anyone, without credentials, reach the identity documents" in str(
        error
    )
    assert "statement 1 lets anyone list" in str(error)
    assert "statement 2 lets anyone read" in str(error)
    assert f'"arn:aws:s3:::{bucket}/*"' in str(error)
    assert "Nothing was changed" in str(error)
    assert "makes private files public" in out
    assert "ready" not in out
    assert s3_client.get_bucket_policy(bucket_name=bucket) == before


@pytest.mark.reliability("private-documents")
@pytest.mark.parametrize(
    ("statement", "access"),
    [
        (lambda b: anyone(b, ["s3:*"], "/private/*"), "read and overwrite and delete"),
        (lambda b: anyone(b, ["s3:GetObject"], "/p*"), "read"),
        (lambda b: anyone(b, ["s3:PutObject"], "/private/identity/*"), "overwrite"),
        (
            lambda b: anyone(
                b,
                ["s3:GetObject"],
                "/*",
                Condition={"StringLike": {"aws:Referer": ["https://example.com/*"]}},
            ),
            "read",
        ),
        (
            lambda b: {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "NotResource": f"arn:aws:s3:::{b}/profile_pics/*",
            },
            "read",
        ),
    ],
    ids=["all-of-private", "p-star", "upload", "referer", "not-resource"],
)
def test_any_anonymous_grant_reaching_private_keys_fails_setup(
    setup_in_mode, bucket, s3_client, statement, access
):
    policy_set(s3_client, bucket, {"Sid": "Operator", **statement(bucket)})

    _out, error = setup_in_mode("presigned")

    assert error is not None
    assert f"'Operator' lets anyone {access}:" in str(error)


@pytest.mark.reliability("private-documents")
def test_the_scripts_exit_non_zero_while_anyone_may_download_identity_documents(
    run_python, bucket, s3_client, s3_server
):
    policy_set(s3_client, bucket, *download_all(bucket))
    env = {
        "USE_MINIO": "true",
        "MINIO_ENDPOINT": s3_server.endpoint,
        "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
        "MINIO_SECRET_KEY": S3_SECRET_KEY,
        "MINIO_BUCKET_NAME": bucket,
        "MINIO_USE_SSL": "false",
        "MINIO_MEDIA_URL_MODE": "presigned",
    }

    result = run_python(["scripts/setup_minio.py"], env)

    assert result.returncode == 1
    assert "statement 2 lets anyone read: " in result.stderr
    assert "Remove those statements from the bucket policy" in result.stderr
    assert "Traceback" not in result.stderr
    assert "ready" not in result.stdout


@pytest.mark.parametrize("url_mode", ["presigned", "proxy"])
def test_grants_outside_private_keys_are_kept_and_named_in_private_modes(
    setup_in_mode, bucket, s3_client, s3_server, url_mode
):
    listing_of_avatars = anyone(
        bucket,
        ["s3:ListBucket"],
        "",
        Condition={"StringEquals": {"s3:prefix": ["profile_pics"]}},
    )
    policy_set(s3_client, bucket, cdn_static(bucket), listing_of_avatars)
    before = s3_client.get_bucket_policy(bucket_name=bucket)

    out, error = setup_in_mode(url_mode)

    assert error is None, error
    assert "Object storage is ready." in out
    assert "kept 2 statement(s) setup_minio did not set" in out
    assert "'CdnStatic', statement 2 (review them)" in out
    assert s3_client.get_bucket_policy(bucket_name=bucket) == before
    assert anonymous_status(s3_server, bucket, PASSPORT) == 403


def test_public_mode_adds_its_grant_and_keeps_the_operators_statements(
    setup_in_mode, bucket, s3_client, s3_server
):
    s3_client.put_object(
        bucket_name=bucket,
        object_name="static/app.css",
        data=io.BytesIO(b"body{}"),
        length=6,
    )
    policy_set(s3_client, bucket, cdn_static(bucket))

    out, error = setup_in_mode("public")

    assert error is None, error
    assert "anonymous read (GetObject only) on profile_pics/" in out
    assert "kept 1 statement(s) setup_minio did not set" in out
    assert "'CdnStatic' (review them)" in out
    statements = statements_of(s3_client, bucket)
    assert set(statements) == {"CdnStatic", "PublicReadMedia"}
    assert anonymous_status(s3_server, bucket, "static/app.css") == 200
    assert anonymous_status(s3_server, bucket, "default_avatar.jpg") == 200
    assert anonymous_status(s3_server, bucket, PASSPORT) == 403


def test_switching_to_presigned_removes_only_the_projects_grant(
    setup_in_mode, bucket, s3_client, s3_server
):
    policy_set(s3_client, bucket, cdn_static(bucket))
    assert setup_in_mode("public")[1] is None

    out, error = setup_in_mode("presigned")

    assert error is None, error
    assert "private (removed the anonymous-read statement)" in out
    assert set(statements_of(s3_client, bucket)) == {"CdnStatic"}
    assert anonymous_status(s3_server, bucket, "default_avatar.jpg") == 403

    again, _error = setup_in_mode("public")

    assert set(statements_of(s3_client, bucket)) == {"CdnStatic", "PublicReadMedia"}
    assert "'CdnStatic' (review them)" in again


# --- unfinished multipart uploads: a lifecycle rule has the store abort them ------


def lifecycle_of(s3_client, bucket_name: str) -> list[tuple]:
    config = s3_client.get_bucket_lifecycle(bucket_name=bucket_name)
    return [
        (
            rule.rule_id,
            rule.status,
            rule.rule_filter.prefix if rule.rule_filter else None,
            rule.expiration.days if rule.expiration else None,
            rule.abort_incomplete_multipart_upload.days_after_initiation
            if rule.abort_incomplete_multipart_upload
            else None,
        )
        for rule in (config.rules if config else [])
    ]


def lifecycle_set(s3_client, bucket_name: str, *rules: Rule) -> None:
    s3_client.set_bucket_lifecycle(
        bucket_name=bucket_name, config=LifecycleConfig(list(rules))
    )


def test_setup_has_the_store_abort_uploads_left_unfinished_for_a_day(
    setup_in_mode, bucket, s3_client
):
    out, error = setup_in_mode("presigned")

    assert error is None, error
    assert (
        "uploads        unfinished multipart uploads aborted after 1 day "
        "(lifecycle rule AbortUnfinishedUploads)" in out
    )
    assert lifecycle_of(s3_client, bucket) == [
        ("AbortUnfinishedUploads", "Enabled", "", None, 1)
    ]

    again, error = setup_in_mode("public")

    assert error is None, error
    assert "unfinished multipart uploads aborted after 1 day" in again
    assert lifecycle_of(s3_client, bucket) == [
        ("AbortUnfinishedUploads", "Enabled", "", None, 1)
    ]


EXPIRE_EXPORTS = Rule(
    ENABLED,
    rule_filter=Filter(prefix="exports/"),
    rule_id="ExpireExports",
    expiration=Expiration(days=30),
)
ABORT_AFTER_A_WEEK = Rule(
    ENABLED,
    rule_filter=Filter(prefix=""),
    rule_id="AbortAfterAWeek",
    abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(7),
)


@pytest.mark.parametrize(
    ("rules", "outcome"),
    [
        (
            [EXPIRE_EXPORTS],
            "kept 1 lifecycle rule(s) setup_minio did not set: 'ExpireExports'; "
            "none aborts unfinished multipart uploads, whose parts stay: add "
            "AbortIncompleteMultipartUpload to them",
        ),
        (
            [EXPIRE_EXPORTS, ABORT_AFTER_A_WEEK],
            "kept 2 lifecycle rule(s) setup_minio did not set: 'ExpireExports', "
            "'AbortAfterAWeek'; unfinished multipart uploads aborted by "
            "'AbortAfterAWeek' after 7 day(s) (check that it covers private/)",
        ),
    ],
    ids=["none-aborts", "one-aborts"],
)
def test_the_operators_lifecycle_rules_are_kept_as_they_are(
    setup_in_mode, bucket, s3_client, rules, outcome
):
    lifecycle_set(s3_client, bucket, *rules)
    before = lifecycle_of(s3_client, bucket)

    out, error = setup_in_mode("presigned")

    assert error is None, error
    assert outcome in out
    assert "Object storage is ready." in out
    # Written back through the client, a rule could lose a part it does not
    # read and widen: they are not written at all.
    assert lifecycle_of(s3_client, bucket) == before


def test_a_store_that_refuses_the_rule_is_set_up_and_says_so(
    setup_in_mode, bucket, s3_client, monkeypatch
):
    # What MinIO answers: its lifecycle rules know no AbortIncompleteMultipartUpload
    # (it aborts uploads left for 24 h by itself). The suite's store takes the rule.
    def refuse(self, bucket_name, config):
        raise S3Error(
            None, "MalformedXML", "The XML you provided was not well-formed", "", "", ""
        )

    monkeypatch.setattr(Minio, "set_bucket_lifecycle", refuse)

    out, error = setup_in_mode("presigned")

    assert error is None, error
    assert (
        "the store refused a lifecycle rule (MalformedXML): parts of unfinished "
        "multipart uploads stay until the store removes them" in out
    )
    assert "Object storage is ready." in out
    assert lifecycle_of(s3_client, bucket) == []
