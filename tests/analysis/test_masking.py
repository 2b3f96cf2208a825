from __future__ import annotations

import hashlib

import pytest

from codegen_forensics.analysis import group_id, mask_message
from codegen_forensics.analysis.masking import NO_MESSAGE


@pytest.mark.parametrize(
    ("message", "template"),
    [
        ("Invalid node_type: 'invalid'", "Invalid node_type: '<value>'"),
        ('can\'t parse "abc" here', 'can\'t parse "<value>" here'),
        (
            "Session 123e4567-e89b-12d3-a456-426614174000 not found",
            "Session <uuid> not found",
        ),
        ("failed at 2026-01-05T10:00:00.123Z", "failed at <timestamp>"),
        ("batch of 2026-01-05 lost", "batch of <date> lost"),
        (
            "GET https://api.example.com/v1/nodes?id=42 returned 503",
            "GET <url> returned <num>",
        ),
        ("Connection to 10.0.3.17:5432 refused", "Connection to <ip>:<port> refused"),
        ("host 10.0.3.17 unreachable", "host <ip> unreachable"),
        (
            "Connection to kafka-broker-1:9092 timed out after 30000ms",
            "Connection to <host>:<port> timed out after <num>ms",
        ),
        ("db.internal.example.com:5432 down", "<host>:<port> down"),
        (
            "File /var/lib/app/models/node.py line 42 failed",
            "File <path> line <num> failed",
        ),
        (
            "hash 9f86d081884c7d65 mismatch at 0xdeadbeef",
            "hash <hex> mismatch at <hex>",
        ),
        (
            "timeout after 30 s on request req_000123 (attempt 3)",
            "timeout after <num> s on request <id> (attempt <num>)",
        ),
        (
            "Payload too large: 1048577 bytes > 1 MB limit",
            "Payload too large: <num> bytes > <num> MB limit",
        ),
        ("memory 85% used", "memory <num>% used"),
        ("retry 3 of 5.", "retry <num> of <num>."),
        (
            "utf-8 codec can't decode byte 0xff in position 12",
            "utf-8 codec can't decode byte <hex> in position <num>",
        ),
        (
            "omninode_codegen_request_analyze_v1 rejected base64 int64 value",
            "omninode_codegen_request_analyze_v1 rejected base64 int64 value",
        ),
        ("  spaced\n\tout  ", "spaced out"),
        ("", NO_MESSAGE),
        (None, NO_MESSAGE),
    ],
)
def test_mask_message_templates(message: str | None, template: str) -> None:
    assert mask_message(message) == template


def test_mask_message_same_kind_same_template() -> None:
    first = mask_message("Connection to kafka-3:9092 refused after 1500ms (try 2)")
    second = mask_message("Connection to kafka-12:9092 refused after 30ms (try 7)")
    assert first == second


def test_group_id_hashes_type_and_template() -> None:
    # The id is the first 12 hex digits of SHA-256 over "<type>\0<template>", so the
    # same kind of error gets the same id next week.
    expected = hashlib.sha256(b"TimeoutError\x00timed out after <num>ms").hexdigest()[
        :12
    ]
    assert group_id("TimeoutError", "timed out after <num>ms") == expected
    assert group_id("KeyError", "timed out after <num>ms") != expected
