"""An S3 server for the tests: moto's server mode as a process of its own on loopback (its
memory and its GIL are not the test's), with a bucket per test and boto3 to look inside."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx

from support import free_port

REGION = "eu-west-1"
# moto takes any credentials; the gateway and obstore need some to sign with.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "test-secret"}


@dataclass
class MotoServer:
    endpoint_url: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, log_path: Path, timeout_s: float = 30.0) -> MotoServer:
        port = free_port()
        log = log_path.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = cls(endpoint_url=f"http://127.0.0.1:{port}", process=process)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited early:\n{log_path.read_text()}")
            try:
                httpx.get(f"{server.endpoint_url}/moto-api/", timeout=1)
                return server
            except httpx.HTTPError:
                time.sleep(0.1)
        server.stop()
        raise RuntimeError(f"moto_server did not start:\n{log_path.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def client(self) -> Any:
        """A boto3 S3 client of this server: what an operator's `aws s3` would show."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def new_bucket(self) -> str:
        name = f"vidgate-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def gateway_env(self, bucket: str, prefix: str) -> dict[str, str]:
        """A gateway's settings for this bucket, as an operator sets them."""
        return {
            "VIDGATE_STORAGE_URL": f"s3://{bucket}/{prefix}",
            "VIDGATE_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": REGION,
            **CREDENTIALS,
        }
