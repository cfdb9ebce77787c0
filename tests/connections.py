"""Real sources for the connection tests: moto's S3 server on loopback (a real S3 API over
HTTP, as boto3 and DVC talk to AWS) and a warehouse database in the session's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from .hub import free_port
from .postgres import PostgresServer, postgres_fixture  # noqa: F401  (fixture)

LAKE_KEY, LAKE_SECRET = "AKIALAKETEST0000", "lake-secret-do-not-leak-0123456789"
DWH_PASSWORD = "dwh-secret-do-not-leak-0123456789"
BUCKET = "raw"


@dataclass
class Lake:
    url: str
    client: Any

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def env(self) -> dict[str, str]:
        return {"LAKE_ACCESS_KEY_ID": LAKE_KEY, "LAKE_SECRET_ACCESS_KEY": LAKE_SECRET}

    def snapshot(self) -> dict[str, bytes]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        return {k: self.client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}

    def restore(self, saved: dict[str, bytes]) -> None:
        """Back to ``saved``: objects added since are deleted, changed ones put back."""
        now = self.snapshot()
        for key in set(now) - set(saved):
            self.client.delete_object(Bucket=BUCKET, Key=key)
        for key, data in saved.items():
            if now.get(key) != data:
                self.put(key, data)


@contextmanager
def s3_server() -> Iterator[Lake]:
    """moto's S3 server on a free loopback port, with an empty bucket ``raw``."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id=LAKE_KEY, aws_secret_access_key=LAKE_SECRET)  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    try:
        yield Lake(url, client)
    finally:
        server.stop()


@pytest.fixture(scope="session", name="lake")
def lake_fixture() -> Iterator[Lake]:
    """moto's S3 server with bucket ``raw``; ``events/2026-11/`` holds three objects."""
    with s3_server() as lake:
        for day in (1, 2, 3):
            lake.put(
                f"events/2026-11/day{day}.json",
                f'{{"day": {day}, "clicks": {day * 10}}}\n'.encode(),
            )
        lake.put("events/other.txt", b"not imported\n")
        yield lake


@dataclass
class Warehouse:
    postgres: PostgresServer
    database: str
    user: str

    @property
    def url(self) -> str:
        p = self.postgres
        return f"postgresql+psycopg2://{self.user}:{DWH_PASSWORD}@{p.host}:{p.port}/{self.database}"

    def execute(self, statement: str) -> None:
        conn = self.postgres.connect(self.database)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def env(self) -> dict[str, str]:
        return {"DWH_URL": self.url}


@pytest.fixture(scope="session", name="warehouse")
def warehouse_fixture(postgres: PostgresServer) -> Warehouse:
    """A database ``dwh`` with a ``customers`` table of 500 rows, owned by ``analyst``."""
    postgres.create_database("dwh", "analyst", DWH_PASSWORD)
    house = Warehouse(postgres, "dwh", "analyst")
    conn = postgres.connect("dwh", "analyst", DWH_PASSWORD)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE customers (id integer PRIMARY KEY, tenure integer, "
                        "plan text, churned boolean)")  # fmt: skip
            cur.execute("INSERT INTO customers SELECT i, i % 72, (ARRAY['monthly','yearly'])"
                        "[1 + i % 2], i % 3 = 0 FROM generate_series(1, 500) AS i")  # fmt: skip
    finally:
        conn.close()
    return house


def connections_config(lake: Lake) -> dict[str, Any]:
    return {
        "lake": {"type": "s3", "endpoint_url": lake.url, "bucket": BUCKET, "prefix": "events/",
                 "credentials": {"env": "LAKE"}, "groups": ["ml-research"],
                 "description": "Raw click events"},
        "dwh": {"type": "sql", "url_env": "DWH_URL", "groups": ["ml-research"],
                "max_rows": 1000, "timeout": 30, "description": "The warehouse"},
    }  # fmt: skip


def secrets_env(lake: Lake, warehouse: Warehouse) -> dict[str, str]:
    return {**lake.env(), **warehouse.env()}


def without_secrets(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("LAKE_ACCESS_KEY_ID",
                                                      "LAKE_SECRET_ACCESS_KEY", "DWH_URL")}  # fmt: skip
