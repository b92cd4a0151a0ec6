"""Configuration: every error names the file, the dotted key and what was expected; secrets
come only from the environment or a file and never show up in errors or dumps; includes
and ``STORYWATCH__SECTION__KEY`` overrides compose as documented."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from storywatch.errors import ConfigError
from storywatch.settings import Settings, load_settings

MAIN = "storywatch.yaml"


@dataclass(frozen=True)
class Case:
    files: dict[str, str]
    expect: list[tuple[str, str, str]]
    """(file, dotted key, part of the message); file is a name in ``files`` or an env var."""
    environ: dict[str, str] = field(default_factory=dict)


ERROR_CASES = {
    "unknown-key": Case({MAIN: "bus:\n  kindd: kafka\n"}, [(MAIN, "bus.kindd", "Extra inputs are not permitted")]),
    "unknown-section": Case({MAIN: "buss: {}\n"}, [(MAIN, "buss", "Extra inputs are not permitted")]),
    "bad-choice": Case(
        {MAIN: "bus:\n  kind: kafak\n"}, [(MAIN, "bus.kind", "Input should be 'embedded' or 'kafka' (got 'kafak')")]
    ),
    "below-minimum": Case(
        {MAIN: "bus:\n  partitions: 0\n"}, [(MAIN, "bus.partitions", "greater than or equal to 1 (got 0)")]
    ),
    "wrong-type": Case(
        {MAIN: "bus:\n  max_poll_interval_ms: soon\n"},
        [(MAIN, "bus.max_poll_interval_ms", "valid integer")],
    ),
    "empty-list": Case({MAIN: "bus:\n  bootstrap_servers: []\n"}, [(MAIN, "bus.bootstrap_servers", "at least 1 item")]),
    "every-problem-at-once": Case(
        {MAIN: "bus:\n  kind: nope\nstore:\n  pathh: x.db\nlog:\n  level: LOUD\n"},
        [
            (MAIN, "bus.kind", "Input should be"),
            (MAIN, "store.pathh", "Extra inputs"),
            (MAIN, "log.level", "Input should be 'DEBUG'"),
        ],
    ),
    "yaml-syntax": Case({MAIN: "bus: [unclosed\n"}, [(MAIN, "", "invalid YAML: line")]),
    "not-a-mapping": Case({MAIN: "- bus\n- store\n"}, [(MAIN, "", "expected a mapping of sections, got list")]),
    "missing-include": Case({MAIN: "include: [nope.yaml]\n"}, [("nope.yaml", "", "file not found")]),
    "include-not-a-list": Case({MAIN: "include: {a: b}\n"}, [(MAIN, "include", "expected a list of file names")]),
    "error-in-included-file": Case(
        {MAIN: "include: [feeds.yaml]\n", "feeds.yaml": "feeds:\n  - url: ' '\n"},
        [("feeds.yaml", "feeds.0.url", "url must not be blank")],
    ),
    "section-defined-twice": Case(
        {MAIN: "include: [more.yaml]\nbus: {}\n", "more.yaml": "bus: {}\n"},
        [("more.yaml", "bus", "section already defined in")],
    ),
    "include-from-include": Case(
        {MAIN: "include: [a.yaml]\n", "a.yaml": "include: [b.yaml]\n", "b.yaml": "{}\n"},
        [("a.yaml", "include", "included files cannot include others")],
    ),
    "channel-missing-field": Case(
        {
            MAIN: "include: [channels.yaml]\n",
            "channels.yaml": "alerts:\n  channels:\n    mail:\n      kind: email\n      from_addr: a@b.c\n"
            "      to: [x@y.z]\n",
        },
        [("channels.yaml", "alerts.channels.mail.host", "Field required")],
    ),
    "unknown-channel-kind": Case(
        {MAIN: "alerts:\n  channels:\n    x:\n      kind: pager\n"},
        [(MAIN, "alerts.channels.x", "expected tags: 'email', 'slack', 'webhook', 'console', 'file'")],
    ),
    "secret-env-unset": Case(
        {MAIN: "alerts:\n  channels:\n    hook:\n      kind: webhook\n      url: {env: SW_TEST_UNSET}\n"},
        [(MAIN, "alerts.channels.hook.url", "environment variable SW_TEST_UNSET is not set")],
    ),
    "secret-file-missing": Case(
        {MAIN: "bus:\n  sasl_password: {file: /nonexistent/secret}\n"},
        [(MAIN, "bus.sasl_password", "cannot read secret file /nonexistent/secret")],
    ),
    "secret-bad-shape": Case(
        {MAIN: "bus:\n  sasl_password: {vault: x}\n"},
        [(MAIN, "bus.sasl_password", "expected {env: VARIABLE_NAME} or {file: /path/to/secret}")],
    ),
    "duplicate-feed-names": Case(
        {
            MAIN: "include: [feeds.yaml]\n",
            "feeds.yaml": "feeds:\n  - url: a.xml\n    name: World Wire\n  - url: b.xml\n    name: ' world  WIRE'\n",
        },
        [("feeds.yaml", "feeds.1.name", "'world  WIRE' is already the name of feeds.0")],
    ),
    "duplicate-feed-urls-name-the-feeds-file": Case(
        {MAIN: "include: [feeds.yaml]\n", "feeds.yaml": "feeds:\n  - url: a.xml\n  - url: a.xml\n"},
        [("feeds.yaml", "feeds.1.url", "'a.xml' is the url of feeds.0; list each feed once")],
    ),
    "duplicate-feed-locations-written-differently": Case(
        {
            MAIN: "feeds:\n  - url: feeds/a.xml\n  - url: ./feeds/../feeds/a.xml\n"
            "  - url: https://News.Example/rss\n  - url: HTTPS://news.example:443/rss\n"
            "  - url: https://news.example/rss?section=world\n",
        },
        [
            (MAIN, "feeds.1.url", "'./feeds/../feeds/a.xml' is the same feed as 'feeds/a.xml' of feeds.0"),
            (MAIN, "feeds.3.url", "'HTTPS://news.example:443/rss' is the same feed as 'https://News.Example/rss'"),
        ],
    ),
    "duplicate-topics-name-the-topics-file": Case(
        {
            MAIN: "include: [topics.yaml]\n",
            "topics.yaml": "topics:\n  - {name: floods, description: x}\n  - {name: floods, description: y}\n",
        },
        [("topics.yaml", "topics", "duplicate topic names ['floods']")],
    ),
    "unknown-channel-names-the-topics-file": Case(
        {MAIN: "include: [topics.yaml]\n", "topics.yaml": "topics:\n  - {name: a, description: x, channels: [p]}\n"},
        [("topics.yaml", "topics.0.channels", "unknown channel 'p'")],
    ),
    "feed-url-ftp": Case(
        {MAIN: "feeds:\n  - url: ftp://example.org/x\n"},
        [(MAIN, "feeds.0.url", "unsupported URL scheme 'ftp' in 'ftp://example.org/x'")],
    ),
    "feed-url-without-host": Case(
        {MAIN: "feeds:\n  - url: a.xml\n  - url: 'http://'\n"},
        [(MAIN, "feeds.1.url", "expected an http:// or https:// URL with a host, got 'http://'")],
    ),
    "feed-url-javascript": Case(
        {MAIN: "feeds:\n  - url: javascript:alert(1)\n"},
        [(MAIN, "feeds.0.url", "unsupported URL scheme 'javascript'")],
    ),
    "feed-url-file-with-host": Case(
        {MAIN: "feeds:\n  - url: file://server/share/a.xml\n"},
        [(MAIN, "feeds.0.url", "expected file:///absolute/path")],
    ),
    "template-directory-missing": Case(
        {
            MAIN: "include: [channels.yaml]\n",
            "channels.yaml": "alerts:\n  channels:\n    c:\n      kind: console\n      template: tmpl/\n",
        },
        [("channels.yaml", "alerts.channels.c.template", "tmpl does not exist")],
    ),
    "template-is-a-file": Case(
        {MAIN: "alerts:\n  channels:\n    c:\n      kind: console\n      template: storywatch.yaml\n"},
        [(MAIN, "alerts.channels.c.template", "is not a directory")],
    ),
    "slack-api-url": Case(
        {MAIN: "alerts:\n  channels:\n    s:\n      kind: slack\n      token: {env: T}\n      channel: x\n"
         "      api_url: slack.com/api\n"},
        [(MAIN, "alerts.channels.s.api_url", "expected an http:// or https:// URL with a host")],
        environ={"T": "xoxb-1"},
    ),
    "env-override-invalid": Case(
        {MAIN: "store: {}\n"},
        [("STORYWATCH__BUS__KIND", "bus.kind", "Input should be 'embedded' or 'kafka' (got 'kafak')")],
        environ={"STORYWATCH__BUS__KIND": "kafak"},
    ),
}


def write_files(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path / MAIN


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_config_errors_name_file_key_and_expectation(tmp_path: Path, case: Case) -> None:
    path = write_files(tmp_path, case.files)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=case.environ)
    text = str(info.value)
    for where, key, expected in case.expect:
        file = (
            f"environment variable {where}" if where.startswith("STORYWATCH__") else str((tmp_path / where).resolve())
        )
        if where == MAIN:
            file = str(path)
        matches = [p for p in info.value.problems if p[0] == file and p[1] == key and expected in p[2]]
        assert matches, f"no problem ({file}, {key}, ...{expected}...) in {info.value.problems}"
        assert (f"{file}: {key}: " if key else f"{file}: ") in text


def test_cross_reference_errors_name_the_dotted_key(tmp_path: Path) -> None:
    path = write_files(tmp_path, {MAIN: "topics:\n  - name: floods\n    channels: [pager]\n"})
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(path) in str(info.value)
    assert "topics.0.channels: unknown channel 'pager'" in str(info.value)


# -- secrets ------------------------------------------------------------------------

SECRET_FIELDS = {
    "webhook-url": ("alerts:\n  channels:\n    c:\n      kind: webhook\n      url: {value}\n", "alerts.channels.c.url"),
    "smtp-password": (
        "alerts:\n  channels:\n    c:\n      kind: email\n      host: smtp.example\n      from_addr: a@example.org\n"
        "      to: [b@example.org]\n      username: u\n      password: {value}\n",
        "alerts.channels.c.password",
    ),
    "slack-webhook": ("alerts:\n  channels:\n    c:\n      kind: slack\n      webhook_url: {value}\n", None),
    "slack-token": (
        "alerts:\n  channels:\n    c:\n      kind: slack\n      channel: '#news'\n      token: {value}\n",
        None,
    ),
    "sasl-password": (
        "bus:\n  sasl_mechanism: PLAIN\n  sasl_username: u\n  sasl_password: {value}\n",
        "bus.sasl_password",
    ),
}
SECRET = "https://hooks.example.invalid/T000/B000/sw-test-secret-9f3a"


def _get_secret(settings: Settings, case: str) -> str:
    if case == "sasl-password":
        secret = settings.bus.sasl_password
    else:
        channel = settings.alerts.channels["c"]
        attr = {"webhook-url": "url", "smtp-password": "password", "slack-webhook": "webhook_url"}.get(case, "token")
        secret = getattr(channel, attr)
    assert secret is not None
    return secret.get_secret_value()


@pytest.mark.parametrize("case", SECRET_FIELDS, ids=SECRET_FIELDS.keys())
def test_secret_from_environment_is_masked_in_every_dump(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    template, _ = SECRET_FIELDS[case]
    path = write_files(tmp_path, {MAIN: template.format(value="{env: SW_TEST_SECRET}")})
    # Secret references read the same environment as the overrides (environ=...).
    settings = load_settings(path, environ={"SW_TEST_SECRET": SECRET})
    assert _get_secret(settings, case) == SECRET
    for dump in (json.dumps(settings.redacted()), settings.model_dump_json(), repr(settings), str(settings)):
        assert SECRET not in dump
    assert "**********" in json.dumps(settings.redacted())


@pytest.mark.parametrize("case", SECRET_FIELDS, ids=SECRET_FIELDS.keys())
def test_secret_from_file_is_read_and_stripped(tmp_path: Path, case: str) -> None:
    template, _ = SECRET_FIELDS[case]
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET + "\n")
    path = write_files(tmp_path, {MAIN: template.format(value="{file: " + str(secret_file) + "}")})
    assert _get_secret(load_settings(path, environ={}), case) == SECRET


@pytest.mark.parametrize("case", SECRET_FIELDS, ids=SECRET_FIELDS.keys())
def test_literal_secret_is_rejected_and_never_echoed(tmp_path: Path, case: str) -> None:
    template, key = SECRET_FIELDS[case]
    path = write_files(tmp_path, {MAIN: template.format(value=f"'{SECRET}'")})
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert SECRET not in str(info.value)
    assert "secrets must not be written in a config file" in str(info.value)
    if key is not None:
        assert f"{path}: {key}: secrets must not be written" in str(info.value)


# -- includes, environment overrides, paths ------------------------------------------


def test_included_files_contribute_sections(tmp_path: Path) -> None:
    path = write_files(
        tmp_path,
        {
            MAIN: "include: [feeds.yaml, topics.yaml]\nlog:\n  level: DEBUG\n",
            "feeds.yaml": "feeds:\n  - url: https://example.org/feed.xml\n    name: Example\n",
            "topics.yaml": "topics:\n  - name: floods\n    description: river floods\n",
        },
    )
    settings = load_settings(path, environ={})
    assert [f.url for f in settings.feeds] == ["https://example.org/feed.xml"]
    assert [t.name for t in settings.topics] == ["floods"]
    assert settings.log.level == "DEBUG"


def test_single_include_may_be_a_string(tmp_path: Path) -> None:
    path = write_files(tmp_path, {MAIN: "include: feeds.yaml\n", "feeds.yaml": "feeds:\n  - url: a.xml\n"})
    assert len(load_settings(path, environ={}).feeds) == 1


ENV_OVERRIDES = {
    "kind-kafka": ({"STORYWATCH__BUS__KIND": "kafka"}, lambda s: s.bus.kind == "kafka"),
    "bootstrap-list": (
        {"STORYWATCH__BUS__BOOTSTRAP_SERVERS": "[kafka:9092, kafka2:9092]"},
        lambda s: s.bus.bootstrap_servers == ["kafka:9092", "kafka2:9092"],
    ),
    "int-from-yaml": ({"STORYWATCH__BUS__PARTITIONS": "12"}, lambda s: s.bus.partitions == 12),
    "overrides-file-value": ({"STORYWATCH__LOG__LEVEL": "WARNING"}, lambda s: s.log.level == "WARNING"),
    "nested-section": (
        {"STORYWATCH__BUS__TOPICS__RAW_ARTICLES": "prod.raw"},
        lambda s: s.bus.topics.raw_articles == "prod.raw" and s.bus.topics.alerts == "storywatch.alerts",
    ),
    "absolute-path": (
        {"STORYWATCH__STORE__PATH": "/var/lib/storywatch/state.db"},
        lambda s: s.path(s.store.path) == Path("/var/lib/storywatch/state.db"),
    ),
    "other-variables-ignored": ({"STORYWATCH_CONFIG": "x", "HOME": "/root"}, lambda s: s.bus.kind == "embedded"),
}


@pytest.mark.parametrize(("environ", "check"), ENV_OVERRIDES.values(), ids=ENV_OVERRIDES.keys())
def test_environment_overrides_single_keys(tmp_path: Path, environ: dict[str, str], check: object) -> None:
    path = write_files(tmp_path, {MAIN: "log:\n  level: DEBUG\nbus:\n  kind: embedded\n"})
    settings = load_settings(path, environ=environ)
    assert callable(check) and check(settings)


def test_environ_argument_replaces_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYWATCH__BUS__KIND", "kafka")
    path = write_files(tmp_path, {MAIN: "{}\n"})
    assert load_settings(path, environ={}).bus.kind == "embedded"
    assert load_settings(path).bus.kind == "kafka"


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / MAIN
    path.write_text("bus:\n  path: ../var/bus.db\nstore:\n  path: state.db\n")
    settings = load_settings(path, environ={})
    assert settings.path(settings.bus.path) == (tmp_path / "var" / "bus.db").resolve()
    assert settings.path(settings.store.path) == (tmp_path / "conf" / "state.db").resolve()


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write_files(tmp_path, {MAIN: "{}\n"}), environ={})
    with pytest.raises(ValueError):
        settings.bus.kind = "kafka"  # type: ignore[misc]


def test_shipped_default_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    settings = load_settings(root / "config" / MAIN, environ={})
    assert settings.bus.kind == "embedded"


def test_literal_secret_from_environment_override_is_rejected_and_never_echoed(tmp_path: Path) -> None:
    path = write_files(tmp_path, {MAIN: "log: {}\n"})
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"STORYWATCH__BUS__SASL_PASSWORD": SECRET})
    assert SECRET not in str(info.value)
    assert "environment variable STORYWATCH__BUS__SASL_PASSWORD: bus.sasl_password: secrets must not" in str(info.value)


def test_a_section_error_caused_by_an_override_names_the_variable(tmp_path: Path) -> None:
    path = write_files(tmp_path, {MAIN: "store: {kind: sqlite}\n"})
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"STORYWATCH__STORE__KIND": "postgres"})
    assert "(with environment variable STORYWATCH__STORE__KIND): store: store.kind postgres needs store.dsn" in str(
        info.value
    )


def test_secret_reference_in_environment_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_files(tmp_path, {MAIN: "{}\n"})
    environ = {"STORYWATCH__BUS__SASL_PASSWORD": "{env: SW_TEST_SASL}", "SW_TEST_SASL": SECRET}
    settings = load_settings(path, environ=environ)
    assert settings.bus.sasl_password is not None
    assert settings.bus.sasl_password.get_secret_value() == SECRET


# -- URLs and names checked at load ---------------------------------------------------

TOKEN = "sw-test-token-5c1e"
BAD_CHANNEL_URLS = {
    "webhook-typo-scheme": ("webhook", "url", f"htp:/127.0.0.1:18602/hook?token={TOKEN}"),
    "webhook-no-host": ("webhook", "url", f"https:///hook?token={TOKEN}"),
    "webhook-ftp": ("webhook", "url", f"ftp://hooks.example/{TOKEN}"),
    "slack-webhook-no-scheme": ("slack", "webhook_url", f"hooks.slack.example/services/{TOKEN}"),
}


@pytest.mark.parametrize(("kind", "key", "value"), BAD_CHANNEL_URLS.values(), ids=BAD_CHANNEL_URLS.keys())
def test_channel_urls_must_be_http_and_are_never_echoed(tmp_path: Path, kind: str, key: str, value: str) -> None:
    path = write_files(
        tmp_path,
        {
            MAIN: "include: [channels.yaml]\n",
            "channels.yaml": f"alerts:\n  channels:\n    hook:\n      kind: {kind}\n      {key}: {{env: SW_HOOK}}\n",
        },
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"SW_HOOK": value})
    assert info.value.problems == [
        (
            str((tmp_path / "channels.yaml").resolve()),
            f"alerts.channels.hook.{key}",
            "expected an http:// or https:// URL with a host (the value is a secret and not shown)",
        )
    ]
    assert TOKEN not in str(info.value)


GOOD_FEEDS = {
    "https": "https://example.org/feed.xml",
    "http-with-port": "http://127.0.0.1:8080/rss",
    "relative-path": "feeds/a.xml",
    "relative-path-with-colon": "./news:a.xml",
    "absolute-path": "/srv/feeds/a.xml",
    "file-url": "file:///srv/feeds/a.xml",
    "file-url-localhost": "file://localhost/srv/feeds/a.xml",
}


@pytest.mark.parametrize("url", GOOD_FEEDS.values(), ids=GOOD_FEEDS.keys())
def test_feed_locations_the_fetcher_reads_are_accepted(tmp_path: Path, url: str) -> None:
    path = write_files(tmp_path, {MAIN: f"feeds:\n  - url: '{url}'\n"})
    assert load_settings(path, environ={}).feeds[0].url == url


def test_feeds_without_names_may_share_the_default(tmp_path: Path) -> None:
    """Unnamed feeds show their own titles, unknown until polled: not a clash at load."""
    path = write_files(tmp_path, {MAIN: "feeds:\n  - url: a.xml\n  - url: b.xml\n    name: ' '\n  - url: c.xml\n"})
    assert [f.name for f in load_settings(path, environ={}).feeds] == ["", "", ""]


def test_an_existing_template_directory_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "tmpl").mkdir()
    path = write_files(tmp_path, {MAIN: "alerts:\n  channels:\n    c:\n      kind: console\n      template: tmpl\n"})
    settings = load_settings(path, environ={})
    channel = settings.alerts.channels["c"]
    assert channel.template is not None and settings.path(channel.template) == (tmp_path / "tmpl").resolve()


def test_feeds_at_different_locations_are_not_duplicates(tmp_path: Path) -> None:
    path = write_files(
        tmp_path,
        {
            MAIN: "feeds:\n  - url: feeds/a.xml\n  - url: feeds/b.xml\n  - url: https://news.example/rss\n"
            "  - url: https://news.example/rss?section=world\n  - url: https://news.example:8443/rss\n"
        },
    )
    assert len(load_settings(path).feeds) == 5
