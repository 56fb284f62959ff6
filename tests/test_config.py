"""SessionConfig, its builder and new_avatar_session: the seed's names, defaults and validation."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from avatar_nb import (
    AgoraEgressConfig,
    AudioFormat,
    AvatarSession,
    LiveKitEgressConfig,
    SessionConfig,
    SessionConfigBuilder,
    new_avatar_session,
)

FULL = dict(
    avatar_id="avatar-123",
    api_key="sk-secret-value",
    app_id="app-1",
    console_endpoint_url="https://console.example.com/v1/console",
    ingress_endpoint_url="https://api.example.com/v2/driveningress",
)


def test_seed_defaults():
    c = SessionConfig()
    assert (c.sample_rate, c.bitrate, c.use_query_auth, c.expire_at) == (16000, 0, False, None)
    assert c.transport_frames is None and c.on_error is None and c.on_close is None
    assert c.fps is None and c.token_timeout == 30.0 and c.audio_format is AudioFormat.PCM_S16LE
    seed_fields = {
        "avatar_id", "api_key", "app_id", "use_query_auth", "expire_at", "sample_rate", "bitrate",
        "transport_frames", "on_error", "on_close", "console_endpoint_url", "ingress_endpoint_url",
    }
    assert seed_fields <= {f.name for f in dataclasses.fields(SessionConfig)}


def test_builder_has_every_seed_method_and_is_fluent():
    expire = datetime(2030, 1, 1, tzinfo=timezone.utc)
    handlers = (lambda f, last: None, lambda e: None, lambda: None)
    b = SessionConfigBuilder()
    built = (
        b.with_avatar_id(FULL["avatar_id"])
        .with_api_key(FULL["api_key"])
        .with_app_id(FULL["app_id"])
        .with_expire_at(expire)
        .with_sample_rate(24000)
        .with_transport_frames(handlers[0])
        .with_on_error(handlers[1])
        .with_on_close(handlers[2])
        .with_console_endpoint_url(FULL["console_endpoint_url"])
        .with_ingress_endpoint_url(FULL["ingress_endpoint_url"])
        .with_use_query_auth(True)
        .with_bitrate(0)
        .with_fps(30)
        .with_token_timeout(5)
        .build()
    )
    assert isinstance(built, SessionConfig)
    assert (built.sample_rate, built.expire_at, built.use_query_auth, built.fps) == (24000, expire, True, 30)
    assert (built.transport_frames, built.on_error, built.on_close) == handlers
    assert isinstance(AvatarSession(built).config, SessionConfig)


def test_build_names_missing_fields():
    with pytest.raises(ValueError, match="missing api_key, console_endpoint_url"):
        SessionConfigBuilder().with_avatar_id("a").with_app_id("b").with_ingress_endpoint_url("https://x").build()


def test_new_avatar_session_rejects_unknown_keywords():
    with pytest.raises(TypeError, match="unknown session option 'sampel_rate'; accepted: avatar_id"):
        new_avatar_session(**FULL, sampel_rate=16000)
    with pytest.raises(TypeError, match="unknown session options 'a', 'b'"):
        new_avatar_session(**FULL, a=1, b=2)


@pytest.mark.parametrize(
    "field,value,error,match",
    [
        ("sample_rate", 12345, ValueError, "unsupported sample_rate 12345; accepted: 8000, 16000, 22050, 24000, 32000, 44100, 48000 Hz"),
        ("sample_rate", 16000.0, TypeError, "sample_rate must be an int"),
        ("sample_rate", True, TypeError, "sample_rate must be an int"),
        ("bitrate", -1, ValueError, "bitrate must be an int >= 0"),
        ("use_query_auth", "yes", TypeError, "use_query_auth must be a bool"),
        ("expire_at", 1700000000, TypeError, "expire_at must be a datetime"),
        ("fps", 0, ValueError, "fps must be a positive number"),
        ("fps", float("inf"), ValueError, "fps must be a positive number"),
        ("token_timeout", 0, ValueError, "token_timeout must be a positive number"),
        ("audio_format", "mp3", ValueError, "unsupported audio_format 'mp3'; accepted: 'pcm_s16le', 'ogg_opus'"),
        ("on_error", "print", TypeError, "on_error must be callable"),
        ("transport_frames", 3, TypeError, "transport_frames must be callable"),
        ("avatar_id", 5, TypeError, "avatar_id must be a str"),
        ("app_id", None, TypeError, "app_id must be a str"),
        ("on_close", object(), TypeError, "on_close must be callable"),
        ("console_endpoint_url", 7, TypeError, "console_endpoint_url must be a str"),
        ("console_endpoint_url", "console.example.com/v1", ValueError,
         "console_endpoint_url 'console.example.com/v1' has no scheme; use one of http, https"),
        ("console_endpoint_url", "wss://console.example.com", ValueError,
         "console_endpoint_url .* has scheme 'wss'; accepted: http, https"),
        ("ingress_endpoint_url", "ftp://api.example.com/x", ValueError,
         "ingress_endpoint_url .* has scheme 'ftp'; accepted: http, https, ws, wss"),
        ("ingress_endpoint_url", "https://", ValueError, "ingress_endpoint_url 'https://' has no host"),
        ("token_timeout", "5", ValueError, "token_timeout must be a positive number"),
        ("bitrate", 1.5, ValueError, "bitrate must be an int >= 0"),
        ("fps", 29.97, None, None),
    ],
)
def test_values_are_checked_before_anything_is_sent(field, value, error, match):
    if error is None:  # an accepted value, as a control
        assert getattr(new_avatar_session(**{**FULL, field: value}).config, field) == value
        return
    with pytest.raises(error, match=match):
        new_avatar_session(**{**FULL, field: value})


@pytest.mark.parametrize("scheme", ["ws", "wss", "http", "https"])
def test_every_ingress_scheme_is_accepted(scheme):
    assert SessionConfig(**{**FULL, "ingress_endpoint_url": f"{scheme}://h/v2"}).ingress_endpoint_url


def test_every_required_field_is_named_when_empty():
    for name in FULL:
        with pytest.raises(ValueError, match=f"missing {name} "):
            new_avatar_session(**{**FULL, name: ""})


def test_api_key_type_error_does_not_show_the_value():
    with pytest.raises(TypeError) as info:
        SessionConfig(api_key=b"sk-bytes-secret")
    assert "sk-bytes-secret" not in str(info.value)


def test_both_egress_modes_rejected():
    with pytest.raises(ValueError, match="cannot both be set"):
        SessionConfig(livekit_egress=LiveKitEgressConfig(), agora_egress=AgoraEgressConfig())


def test_secrets_not_in_repr():
    c = SessionConfig(**FULL, livekit_egress=LiveKitEgressConfig(api_token="lk-token-xyz", api_secret="lk-secret"))
    text = repr(c) + str(c)
    assert "sk-secret-value" not in text and "lk-token-xyz" not in text and "lk-secret" not in text
    assert "avatar-123" in text
    assert "sk-secret-value" not in repr(new_avatar_session(**FULL))


def test_audio_format_from_string():
    assert SessionConfig(audio_format="ogg_opus").audio_format is AudioFormat.OGG_OPUS
