"""Bucket bootstrap shared by MinIOStorage and the setup_minio command."""

from __future__ import annotations

import json

from minio import Minio
from minio.error import S3Error, ServerError

from storage.config import PUBLIC_MEDIA_FILES, PUBLIC_MEDIA_PREFIXES


class NotAnS3Api(ServerError):
    """A success answer that no S3 API gives.

    MINIO_ENDPOINT on another web server (MinIO's console port, a proxy's
    page) that answers 200 to every method: the minio client takes any 2xx as
    success. A minio ``ServerError``, so that ``MinIOStorage.errors`` turns it
    into ``StorageUnavailable`` with the hint to check MINIO_ENDPOINT.
    """

    def __init__(self, answer: str) -> None:
        super().__init__(f"{answer}: the endpoint does not look like an S3 API", 200)


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
                "Sid": "PublicReadMedia",
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": resources,
            }
        ],
    }


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
    bucket_policy_apply(client=client, bucket_name=bucket_name, url_mode=url_mode)
    return True


def bucket_policy_apply(*, client: Minio, bucket_name: str, url_mode: str) -> str:
    """Make the bucket policy match the URL mode; return what was done.

    ``public`` sets the anonymous-read policy. The other modes need a private
    bucket: the policy this project set is removed, any other policy is left
    for the operator to review.
    """
    ours = public_read_policy(bucket_name)
    if url_mode == "public":
        client.set_bucket_policy(bucket_name=bucket_name, policy=json.dumps(ours))
        granted = ", ".join(PUBLIC_MEDIA_PREFIXES + PUBLIC_MEDIA_FILES)
        return f"anonymous read (GetObject only) on {granted}"
    try:
        current = client.get_bucket_policy(bucket_name=bucket_name)
    except S3Error as exc:
        if exc.code not in ("NoSuchBucketPolicy", "NoSuchPolicy"):
            raise
        return "private (no bucket policy)"
    if _same_policy(_policy_parse(current), ours):
        client.delete_bucket_policy(bucket_name=bucket_name)
        return "private (removed the anonymous-read policy)"
    return "left an existing bucket policy unchanged: review it"


def _policy_parse(text: str) -> dict:
    try:
        policy = json.loads(text)
    except ValueError:
        policy = None
    if not isinstance(policy, dict):
        raise NotAnS3Api("it answered with a bucket policy that is not JSON")
    return policy


def _same_policy(a: dict, b: dict) -> bool:
    def statements(policy: dict) -> list:
        found = []
        for statement in policy.get("Statement", []):
            actions = statement.get("Action", [])
            resources = statement.get("Resource", [])
            found.append(
                (
                    statement.get("Effect"),
                    tuple(sorted([actions] if isinstance(actions, str) else actions)),
                    tuple(
                        sorted([resources] if isinstance(resources, str) else resources)
                    ),
                )
            )
        return sorted(found)

    return statements(a) == statements(b)
