import pytest

from keyltv.data.schema import describe_value, redact_text, redact_uri


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://bob:hunter2@mlflow.example.com/x?token=abc&run=1",
         "https://bob:***@mlflow.example.com/x?token=***&run=1"),
        ("https://abc123@mlflow.example.com", "https://***@mlflow.example.com"),
        ("sqlite:////tmp/keyltv/mlflow.db", "sqlite:////tmp/keyltv/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("databricks", "databricks"),
    ],
    ids=["password-and-token", "bare-token", "sqlite", "local-server", "profile"],
)
def test_redact_uri_masks_secrets_and_keeps_everything_else(uri, shown):
    assert redact_uri(uri) == shown


def test_redact_text_masks_passwords_inside_messages():
    message = "request to http://bob:hunter2@host:5000/api failed"
    assert redact_text(message) == "request to http://bob:***@host:5000/api failed"


def test_describe_value_shortens_and_shows_control_bytes():
    assert describe_value("a\tb") == "'a\\tb'"
    assert len(describe_value("x" * 100)) == 40
