"""Code packages in COS, where SCF fetches what is too large to send inline (the API refuses
requests over 10 MB; the layer is larger).

A package's key carries the sha256 of its content (`packages/<what>/<sha256>.zip`), so an
upload is skipped when the object is already there, and a key once written never changes.
`location` is how SCF's `Code` names it: the bucket without `-<appid>`, the key with a
leading `/`, the bucket's region.
"""

from __future__ import annotations

from pathlib import Path

from qcloud_cos import CosConfig, CosS3Client
from qcloud_cos.cos_exception import CosClientError, CosServiceError

from infra.deploy.scf import ApiError
from infra.deploy.settings import Settings


class PackageStore:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: CosS3Client | None = None

    def _cos(self) -> CosS3Client:
        if self._client is None:
            s = self._settings
            where: dict[str, object] = {"Scheme": "https"}
            if s.cos_endpoint:
                host, _, port = s.cos_endpoint.rpartition(":")
                where = {"Scheme": "http", "IP": host, "Port": int(port)}
            config = CosConfig(
                Region=s.region,
                SecretId=s.secret_id,
                SecretKey=s.secret_key,
                Token=s.session_token,
                **where,
            )
            self._client = CosS3Client(config)
        return self._client

    @staticmethod
    def key(what: str, sha256: str) -> str:
        return f"packages/{what}/{sha256}.zip"

    def upload(self, key: str, path: Path) -> bool:
        """Put `path` at `key` unless it is there already; True when it was uploaded.
        A refusal is an ApiError, as SCF's are."""
        bucket = self._settings.bucket
        try:
            try:
                self._cos().head_object(Bucket=bucket, Key=key)
                return False
            except CosServiceError as error:
                if error.get_status_code() != 404:
                    raise
            with path.open("rb") as body:
                self._cos().put_object(Bucket=bucket, Key=key, Body=body)
        except CosServiceError as error:
            code = f"{error.get_status_code()} {error.get_error_code()}"
            raise ApiError(f"COS {bucket}/{key}", code, str(error.get_error_msg())) from error
        except CosClientError as error:
            raise ApiError(f"COS {bucket}/{key}", "ClientError", str(error)) from error
        return True

    def location(self, key: str) -> dict[str, str]:
        return {
            "CosBucketName": self._settings.bucket_short_name,
            "CosObjectName": "/" + key,
            "CosBucketRegion": self._settings.region,
        }
