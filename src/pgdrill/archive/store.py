"""Talking to the object store: locations, credentials from the environment, clear errors.

Credentials are read from the environment (AWS-style variables) or handed over by the
local S3 server, and never put into argv, logs, reports or exception messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pgdrill.errors import S3Error, UsageError

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
_LEGACY_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}")


def bucket_name_problem(name: str, legacy: bool = False) -> str | None:
    """Why ``name`` breaks the S3 bucket naming rules (AWS general purpose buckets), or None.

    ``legacy``: only reject what no bucket can be named (old us-east-1 buckets may hold
    capitals and underscores), for reading a bucket someone else created."""
    if legacy:
        return None if _LEGACY_BUCKET.fullmatch(name) else \
            "may only contain letters, digits, dots, hyphens and underscores (1 to 255)"
    if not 3 <= len(name) <= 63:
        return f"must be 3 to 63 characters long (it has {len(name)})"
    if not _BUCKET.fullmatch(name):
        return "may only contain lowercase letters, digits, dots and hyphens, and must begin and end " \
               "with a letter or a digit"
    if ".." in name:
        return "must not contain two adjacent dots"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return "must not look like an IP address"
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")):
        return "must not start with a reserved prefix (xn--, sthree-, amzn-s3-demo-)"
    if name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        return "must not end with a reserved suffix (-s3alias, --ol-s3, .mrap, --x-s3, --table-s3)"
    return None


def endpoint_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be an S3 endpoint URL (``http(s)://host[:port][/path]``), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    if not parts.hostname:
        return "has no host name"
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number or out of range)
    except ValueError:
        return "has an invalid port"
    if parts.query or parts.fragment:
        return "must not have a query string or a fragment"
    return None


def check_endpoint_url(url: str | None, where: str) -> None:
    """Raise a one-line ``UsageError`` naming ``where`` (a config key, an option) for a bad URL."""
    problem = None if url is None else endpoint_url_problem(url)
    if problem:
        raise UsageError(f"{where} = {url!r} is not a valid S3 endpoint URL: it {problem} "
                         "(e.g. http://127.0.0.1:9000 or https://s3.fr-par.scw.cloud)")


def check_bucket_name(name: str, label: str, legacy: bool = False) -> None:
    """Raise a one-line ``UsageError`` for a bad bucket name; ``label`` names it (``s3.bucket = 'x'``)."""
    problem = bucket_name_problem(name, legacy)
    if problem:
        raise UsageError(f"{label} is not a valid S3 bucket name: it {problem}")


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/prefix``; ``prefix`` has no leading or trailing slash."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not url.startswith("s3://"):
            raise UsageError(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise UsageError(f"S3 URL {url!r} has no bucket name")
        check_bucket_name(bucket, f"bucket {bucket!r} of {url}", legacy=True)
        return cls(bucket, prefix.strip("/"))

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p)

    def child(self, *parts: str) -> S3Location:
        return S3Location(self.bucket, self.key(*parts))


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    region: str = "us-east-1"
    session_token: str | None = field(default=None, repr=False)
    env_names: str = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    """Where they came from (variable names, never values): error messages say what to fix."""

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> S3Credentials:
        env = os.environ if environ is None else environ
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise UsageError(
                "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
            )
        return cls(key, secret, env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1")

    def as_environment(self) -> dict[str, str]:
        """Variables for child processes (barman-cloud, PostgreSQL's archive_command)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def secrets(self) -> tuple[str, ...]:
        return (self.access_key_id, self.secret_access_key) + ((self.session_token,) if self.session_token else ())


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime
    etag: str | None = None
    """The listing's ETag without its quotes: the MD5 of the body for a plain upload, not for a
    multipart one (``<md5 of md5s>-<parts>``) nor under SSE-KMS/SSE-C."""


def make_client(endpoint_url: str | None, credentials: S3Credentials) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        region_name=credentials.region,
        # Fail fast on a dead endpoint: a drill or an audit must say so in seconds.
        config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"}),
    )


def describe_error(exc: BaseException, location: S3Location, endpoint_url: str | None,
                   env_names: str = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") -> str:
    """One line that says what went wrong and what to fix; never includes credentials.

    :param env_names: the variables the credentials came from, named in the fix
    """
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    where = f"{location.url} at {endpoint_url or 'AWS default endpoint'}"
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return f"S3 endpoint unreachable for {where}: check the endpoint URL and that the server is up"
    if isinstance(exc, ReadTimeoutError):
        return f"S3 endpoint timed out for {where}"
    if isinstance(exc, NoCredentialsError):
        return f"S3 credentials missing: set {env_names.replace('/', ' and ')}"
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"):
            return f"S3 rejected the credentials ({code}) for {where}: check {env_names}"
        if code in ("AccessDenied", "403", "Forbidden"):
            return f"S3 access denied for {where}: the credentials lack permission"
        if code in ("NoSuchBucket", "404") and not exc.response.get("Error", {}).get("Key"):
            return f"S3 bucket {location.bucket!r} does not exist at {endpoint_url or 'AWS'}: create it or fix the URL"
        return f"S3 error {code or type(exc).__name__} for {where}"
    return f"S3 error {type(exc).__name__} for {where}"


class ObjectStore:
    """A thin, error-translating wrapper around one bucket.

    Reads (``list``, ``get``) are what audit uses; writes exist for the local S3 server's
    setup and for fault injection, which only ever touches the drill's own prefix.
    """

    def __init__(self, endpoint_url: str | None, credentials: S3Credentials, bucket: str):
        self.endpoint_url = endpoint_url
        self.credentials = credentials
        self.bucket = bucket
        self._client = make_client(endpoint_url, credentials)

    def _fail(self, exc: BaseException, key: str = "") -> S3Error:
        return S3Error(describe_error(exc, S3Location(self.bucket, key), self.endpoint_url,
                                      self.credentials.env_names))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (paginated ``list_objects_v2``, no per-object requests)."""
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    etag = item.get("ETag")
                    yield ObjectInfo(item["Key"], int(item["Size"]), item["LastModified"],
                                     etag.strip('"') if etag else None)
        except Exception as exc:  # botocore raises a zoo of types; translate all of them
            raise self._fail(exc, prefix) from None

    def list_prefixes(self, prefix: str) -> list[str]:
        """Immediate sub-"folders" of ``prefix`` (with ``/`` delimiter)."""
        paginator = self._client.get_paginator("list_objects_v2")
        found: list[str] = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                found.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        except Exception as exc:
            raise self._fail(exc, prefix) from None
        return found

    def get(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise self._fail(exc, key) from None

    def put(self, key: str, body: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=body)
        except Exception as exc:
            raise self._fail(exc, key) from None

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise self._fail(exc, key) from None

    def check_access(self) -> None:
        """Raise a one-line ``S3Error`` unless the bucket is reachable and readable."""
        try:
            self._client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
        except Exception as exc:
            raise self._fail(exc) from None
