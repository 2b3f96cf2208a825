import pytest

from codegen_forensics.analysis.replay import is_transient


@pytest.mark.parametrize(
    ("error_type", "message", "expected"),
    [
        ("TimeoutError", "Timed out after 45.5s waiting for a response", True),
        ("ConnectionRefusedError", "connection refused by 10.0.0.4:8053", True),
        # The client library's refusals say neither "timeout" nor "refused".
        (
            "ClientConnectorError",
            "Cannot connect to host llm-0:8053 [Connect call failed ('10.1.1.7', 80)]",
            True,
        ),
        ("KafkaError", "Broker not available", True),
        ("HTTPError", "upstream answered 503", True),
        ("ValidationError", "Invalid node_type: 'Effect'", False),
        ("KeyError", "missing key 'architecture' in intelligence payload", False),
        (None, None, False),
    ],
)
def test_is_transient_reads_type_and_message(
    error_type: str | None, message: str | None, expected: bool
) -> None:
    assert is_transient(error_type, message) is expected
