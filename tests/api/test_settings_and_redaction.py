"""Connection settings, the CLI options, -v logging, and that no secret ever leaks."""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import click
import pytest
from click.testing import CliRunner

from kaizenctl.api.contract_v1 import ContractV1Api
from kaizenctl.api.errors import ApiError, ConflictError
from kaizenctl.api.httplog import HTTP_LOGGER_NAME, configure_logging, http_logger
from kaizenctl.api.retry import RetryPolicy
from kaizenctl.api.session import tls_verification
from kaizenctl.api.settings import ConnectionSettings, settings_from_env
from kaizenctl.commands.options import connection_options, settings_from_options
from kaizenctl.errors import UsageError
from kaizenctl.redact import redact, register_secret
from tests.api.api_fake import AGENT, EMAIL, PASSWORD, FakeKaizen, Fault
from tests.api.api_helpers import password_settings, token_settings, with_api


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(2, stream)
    yield stream
    configure_logging(0, io.StringIO())


# ---- settings ----


def test_a_missing_url_says_what_to_set() -> None:
    with pytest.raises(UsageError, match="--api-url or set KAIZEN_API_URL"):
        settings_from_env(environ={"KAIZEN_TOKEN": "tok-tok-tok"})


def test_missing_credentials_say_what_to_set() -> None:
    with pytest.raises(UsageError, match=r"KAIZEN_TOKEN.*KAIZEN_EMAIL and KAIZEN_PASSWORD"):
        settings_from_env(environ={"KAIZEN_API_URL": "https://k.example.com"})


def test_an_email_without_a_password_says_to_set_both() -> None:
    env = {"KAIZEN_API_URL": "https://k.example.com", "KAIZEN_EMAIL": "a@b.c"}
    with pytest.raises(UsageError, match="KAIZEN_PASSWORD is not"):
        settings_from_env(environ=env)


def test_the_flag_wins_over_the_environment() -> None:
    env = {"KAIZEN_API_URL": "https://env.example.com", "KAIZEN_TOKEN": "tok-tok-tok"}
    settings = settings_from_env(api_url="https://flag.example.com/", environ=env)
    assert settings.api_url == "https://flag.example.com"
    assert settings.token == "tok-tok-tok"


@pytest.mark.parametrize(
    "url", ["http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"]
)
def test_plain_http_is_fine_on_loopback(url: str) -> None:
    assert ConnectionSettings(api_url=url, token="tok-tok-tok").api_url == url


def test_plain_http_elsewhere_is_refused_unless_insecure() -> None:
    with pytest.raises(UsageError, match=r"refusing plain http.*--insecure"):
        ConnectionSettings(api_url="http://kaizen.example.com", token="tok-tok-tok")
    settings = ConnectionSettings(api_url="http://kaizen.example.com", insecure=True)
    assert settings.api_url == "http://kaizen.example.com"


@pytest.mark.parametrize("url", ["ftp://k.example.com", "k.example.com", "https://"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(UsageError, match="not an http"):
        ConnectionSettings(api_url=url)


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(UsageError, match="must not carry credentials"):
        ConnectionSettings(api_url="https://me:hunter22@k.example.com")


def test_secrets_stay_out_of_the_settings_repr() -> None:
    settings = token_settings(refresh_token="refresh-secret-1", email=EMAIL, password=PASSWORD)
    text = repr(settings)
    for secret in ("initial-access-token", "refresh-secret-1", PASSWORD):
        assert secret not in text


def test_tls_is_verified_by_default_and_a_ca_bundle_adds_trust() -> None:
    assert tls_verification(None) is True
    import certifi

    context = tls_verification(certifi.where())
    assert not isinstance(context, bool)
    assert context.verify_mode.name == "CERT_REQUIRED"


def test_a_missing_ca_bundle_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        ConnectionSettings(api_url="https://k.example.com", ca_bundle=str(tmp_path / "nope.pem"))


# ---- CLI options ----


def test_connection_options_build_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_TOKEN", "tok-tok-tok")
    monkeypatch.delenv("KAIZEN_API_URL", raising=False)
    seen: list[ConnectionSettings] = []

    @click.command()
    @connection_options
    @click.option("--other", default="x")
    def command(**options: object) -> None:
        seen.append(settings_from_options(**options))  # type: ignore[arg-type]

    result = CliRunner().invoke(
        command, ["--api-url", "http://localhost:1", "--parallelism", "3", "-vv"]
    )
    assert result.exit_code == 0, result.output
    assert (seen[0].api_url, seen[0].parallelism, seen[0].timeout) == ("http://localhost:1", 3, 30)
    assert logging.getLogger("kaizenctl").level == logging.DEBUG
    configure_logging(0, io.StringIO())

    result = CliRunner().invoke(command, ["--api-url", "http://localhost:1", "--parallelism", "0"])
    assert result.exit_code == 2


def test_the_options_module_does_not_import_httpx() -> None:
    code = "import sys, kaizenctl.commands.options; sys.exit('httpx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


# ---- logging and redaction ----


def test_v_logs_method_path_status_and_duration(
    fake: FakeKaizen, policy: RetryPolicy, log_stream: io.StringIO
) -> None:
    configure_logging(1, log_stream)
    with_api(fake, policy, lambda api: api.agents.list_all())
    line = log_stream.getvalue().strip().splitlines()[0]
    assert line.startswith(f"{HTTP_LOGGER_NAME}: GET /api/v1/agents 200 ")
    assert line.endswith(" ms")


def test_no_secret_appears_through_login_refresh_and_error_at_top_verbosity(
    fake: FakeKaizen, policy: RetryPolicy, log_stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    # Everything, httpx and httpcore included, at DEBUG: the worst case for a leak.
    caplog.set_level(logging.DEBUG)
    # A server that echoes the password back in an error must not get it printed either.
    fake.add_fault("POST", "/agents", Fault("answer", 409, detail=f"echo {PASSWORD}"))
    errors: list[str] = []

    async def scenario(api: ContractV1Api) -> None:
        fake.expire_access_tokens()
        await api.agents.list_all()  # 401 -> refresh -> retry
        try:
            await api.agents.create(
                {"name": "x", "system_prompt": "p", "provider": "openai", "model": "m"}
            )
        except ConflictError as exc:
            errors.append(str(exc))
            errors.append(repr(exc))
        await api.auth.logout()

    with_api(fake, policy, scenario, password_settings())
    assert fake.login_calls == 1
    assert fake.refresh_calls == 1
    secrets = {
        PASSWORD,
        *fake.access_tokens,
        *fake.refresh_tokens,
        "access-token-",
        "refresh-token-",
    }
    assert len(errors) == 2
    assert "(sensitive)" in errors[0]
    captured = "\n".join([log_stream.getvalue(), caplog.text, *errors])
    assert "POST /api/v1/auth/refresh 200" in captured
    for secret in secrets:
        assert secret not in captured, secret
    assert "Bearer" not in captured


def test_an_api_error_message_is_redacted_even_when_built_by_hand() -> None:
    from kaizenctl.redact import register_secret

    register_secret("s3cret-value")
    error = ApiError("GET", "/x", 400, "bad s3cret-value")
    assert "s3cret-value" not in str(error)


def test_a_secret_echoed_url_encoded_or_in_another_case_is_still_masked(
    fake: FakeKaizen, policy: RetryPolicy, log_stream: io.StringIO
) -> None:
    password = "p+w/ö&x y%Z"
    api_key = "kz-live-4f9a0c7e1b"
    fake.access_tokens.add(api_key)
    echoed = [
        password,
        quote_plus(password),  # a form body echoed back: p%2Bw%2F%C3%B6%26x+y%25Z
        quote(password, safe=""),  # a path or query: ...%26x%20y...
        quote_plus(password).lower(),  # lower-case percent escapes
        json.dumps(password)[1:-1],  # JSON-escaped: p+w/\u00f6&x y%Z
        api_key.upper(),
        base64.b64encode(api_key.encode()).decode(),
    ]
    fake.add_fault("POST", "/agents", Fault("answer", 409, detail=" | ".join(echoed)))
    errors: list[str] = []

    async def scenario(api: ContractV1Api) -> None:
        try:
            await api.agents.create(dict(AGENT))
        except ConflictError as exc:
            errors.extend([str(exc), repr(exc)])
            http_logger().debug("the server said: %s", exc.detail)

    settings = token_settings(token=api_key, email=EMAIL, password=password)
    with_api(fake, policy, scenario, settings)
    assert len(errors) == 2
    output = "\n".join([log_stream.getvalue(), *errors])
    assert output.count("(sensitive)") >= 3 * len(echoed)  # each form, in both errors and the log
    for form in echoed:
        assert form not in output, form
    assert "%2b" not in output.lower()


def test_the_log_filter_masks_a_registered_secret_in_message_arguments_and_tracebacks(
    log_stream: io.StringIO,
) -> None:
    register_secret("hunter2-but-longer")
    logger = http_logger()
    logger.info("token is %s", "hunter2-but-longer")
    try:
        raise RuntimeError("failed with hunter2-but-longer")
    except RuntimeError:
        logger.warning("request failed", exc_info=True)
    written = log_stream.getvalue()
    assert "token is (sensitive)" in written
    assert "RuntimeError: failed with (sensitive)" in written
    assert "hunter2" not in written


def test_redaction_covers_the_common_encodings_of_a_secret() -> None:
    register_secret("Ab+c/d&e f")
    assert redact("x=Ab%2Bc%2Fd%26e+f;y=ab%2bc%2fd%26e%20f;Z=AB+C/D&E F") == (
        "x=(sensitive);y=(sensitive);Z=(sensitive)"
    )
    assert redact(base64.b64encode(b"Ab+c/d&e f").decode()) == "(sensitive)"
    assert redact("nothing secret here") == "nothing secret here"
