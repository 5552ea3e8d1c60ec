"""s3:// backend on boto3 (extra `heavylift[s3]`).

URL: `s3://bucket[/prefix]`. Credentials and region come the usual AWS way (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION, profiles, instance roles); S3_ENDPOINT_URL points at
an S3-compatible server (moto, MinIO) and switches to path-style addressing. Signed uploads are
presigned PUTs whose signature covers the content type, the x-amz-meta-* headers and
`If-None-Match: *` (the URL works once: S3 answers a second PUT to the key with 412).

S3 listings carry no content type or metadata: `list()` gives None and {} for them; `info()` has
both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from heavylift.settings import Settings
from heavylift.storage.base import (
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    ReadableStream,
    StorageError,
    StorageUnavailableError,
)

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_UNAVAILABLE = {"SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError", "503"}


class S3Store(ObjectStore):
    def __init__(self, url: str, settings: Settings, bucket: str, prefix: str) -> None:
        super().__init__(url, settings, prefix, bucket)
        self._bucket = bucket
        endpoint = settings.s3_endpoint_url
        config = Config(
            connect_timeout=settings.storage_timeout_s,
            read_timeout=settings.storage_timeout_s,
            retries={"mode": "standard", "total_max_attempts": 3},
            signature_version="s3v4",  # presigning would otherwise fall back to SigV2
            s3={"addressing_style": "path"} if endpoint else None,
        )
        self._client: S3Client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, config=config
        )

    def _map_error(self, exc: Exception, key: str) -> StorageError | None:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _NOT_FOUND:
                return ObjectNotFoundError(f"no object {key!r} in {self.url}")
            if code in _UNAVAILABLE or status >= 500:
                return StorageUnavailableError(f"{self.url} unavailable: {exc}")
            return StorageError(f"{self.url}: {key!r}: {exc}")
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return StorageUnavailableError(f"{self.url} unavailable: {exc}")
        if isinstance(exc, BotoCoreError):
            return StorageError(f"{self.url}: {key!r}: {exc}")
        return None

    def _upload(
        self,
        name: str,
        source: ReadableStream,
        size: int | None,
        content_type: str,
        metadata: dict[str, str],
    ) -> ObjectInfo:
        # One streamed PUT (botocore reads the seekable body in chunks and rewinds it on retry).
        self._client.put_object(
            Bucket=self._bucket,
            Key=name,
            Body=source,  # type: ignore[arg-type]
            ContentType=content_type,
            Metadata=metadata,
        )
        return self._info(name)

    def _open_read(self, name: str) -> StreamingBody:
        return self._client.get_object(Bucket=self._bucket, Key=name)["Body"]

    def _info(self, name: str) -> ObjectInfo:
        head = self._client.head_object(Bucket=self._bucket, Key=name)
        return _info(name, head)

    def _delete(self, name: str) -> None:
        self._client.delete_object(Bucket=self._bucket, Key=name)

    def _list(self, name_prefix: str) -> Iterator[ObjectInfo]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=name_prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"],
                    size=item["Size"],
                    content_type=None,
                    metadata={},
                    etag_or_generation=item["ETag"].strip('"'),
                    updated=item["LastModified"],
                )

    def _sign_upload(
        self, name: str, content_type: str, size: int, metadata: dict[str, str], expires_at: int
    ) -> tuple[str, dict[str, str]]:
        url = self._client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self._bucket,
                "Key": name,
                "ContentType": content_type,
                "ContentLength": size,
                "Metadata": metadata,
                # Signed, so a client must send it: S3 then refuses a replay with 412.
                "IfNoneMatch": "*",
            },
            ExpiresIn=max(1, expires_at - int(time.time())),
            HttpMethod="PUT",
        )
        headers = {"Content-Type": content_type, "If-None-Match": "*"}
        headers.update({f"x-amz-meta-{k}": v for k, v in metadata.items()})
        return url, headers

    def _upload_base(self) -> str:
        # Presigning is local: the host follows the endpoint, region and addressing style (a
        # bucket subdomain on AWS). Without credentials there is nothing to sign: the endpoint.
        try:
            return self._client.generate_presigned_url(
                "put_object", Params={"Bucket": self._bucket, "Key": "origin"}, ExpiresIn=1,
                HttpMethod="PUT",
            )
        except NoCredentialsError:
            return self._client.meta.endpoint_url


def _info(name: str, head: HeadObjectOutputTypeDef) -> ObjectInfo:
    return ObjectInfo(
        key=name,
        size=head["ContentLength"],
        content_type=head.get("ContentType"),
        metadata=head.get("Metadata", {}),
        etag_or_generation=head["ETag"].strip('"'),
        updated=head["LastModified"],
    )
