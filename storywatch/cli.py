"""The ``storywatch`` command: the composition root that wires stages to a bus and a store.

Exit codes: 0 success; 1 the command ran but something it checked failed (a feed, a
config); 2 usage or configuration error; 3 a service it needs is unavailable (bus,
store); 130 interrupted before it could finish.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from storywatch.errors import BusError, ConfigError, StoreError, StorywatchError
from storywatch.logs import configure, kv
from storywatch.settings import Settings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
STAGES = ("ingest", "enrich", "alerts")

log = logging.getLogger("storywatch.cli")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Config file (default: $STORYWATCH_CONFIG or config/storywatch.yaml).",
)
once_option = click.option("--once", is_flag=True, help="Do one round, then exit.")


def _secrets(obj: Any) -> Iterator[str]:
    from pydantic import BaseModel, SecretStr

    if isinstance(obj, SecretStr):
        yield obj.get_secret_value()
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _secrets(getattr(obj, name))
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _secrets(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _secrets(v)


def load(config_path: Path | None, *, secrets: bool = True) -> Settings:
    """Load the config and set up logging; a config error exits 2 with every problem listed.

    ``secrets=False`` for commands that send nothing (``status``, ``alerts list``, the
    dashboard, the offline tools): they run without the channels' secrets in the environment.
    """
    try:
        settings = load_settings(config_path, secrets=secrets)
    except ConfigError as exc:
        click.echo(f"storywatch: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    configure(settings.log.level, settings.log.format, secrets=list(_secrets(settings)))
    from storywatch.security import permission_problems, sensitive_paths
    from storywatch.settings import default_config_path

    for problem in permission_problems(sensitive_paths(config_path or default_config_path(), settings)):
        log.warning("insecure file permissions", extra=kv(path=str(problem.path), mode=f"{problem.mode:04o}"))
    return settings


def _observer(settings: Settings, store: Any, metrics: Any, health: Any, *, dashboard: bool) -> Any:
    """The HTTP side of a service: probes and metrics, plus the dashboard for ``storywatch run``."""
    from storywatch.observe import ObserveServer

    if not dashboard:
        return ObserveServer(metrics, health, settings.http.host, settings.http.port).start()
    from storywatch.web import create_app
    from storywatch.web.server import WebServer

    app = create_app(settings, store, health=health, metrics=metrics)
    return WebServer(app, settings.http.host, settings.http.port).start()


def _make_service(
    stage: str, settings: Settings, bus: Any, store: Any, clock: Any, metrics: Any = None, role: str | None = None
) -> Any:
    if stage == "ingest":
        from ingest.service import IngestService

        return IngestService(settings, bus, store, clock, metrics=metrics)
    if stage == "enrich":
        from enrich.service import EnrichService

        return EnrichService(settings, bus, store, clock, metrics=metrics, role=role)
    from alerts.service import AlertsService

    return AlertsService(settings, bus, store, clock, metrics=metrics)


@contextmanager
def _unavailable_exits() -> Iterator[None]:
    try:
        yield
    except (BusError, StoreError) as exc:
        log.error("service unavailable", extra=kv(error=str(exc)))
        click.echo(f"storywatch: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)


def all_topics(settings: Settings) -> list[str]:
    """Every bus topic storywatch uses."""
    t = settings.bus.topics
    return [t.raw_articles, t.embedded_articles, t.story_events, t.feed_health, t.alerts, t.dead_letters]


def run_stages(settings: Settings, stages: tuple[str, ...], once: bool, *, role: str | None = None) -> None:
    """Build the bus, store and services for ``stages`` and run them until stopped.

    ``role`` is the enrich stage's role when it is not the configured ``enrich.role``.
    """
    from storywatch.bus import make_bus
    from storywatch.clock import SystemClock
    from storywatch.observe import Health, Metrics
    from storywatch.runtime import run_services, stop_on_signals
    from storywatch.store import make_store

    stop = threading.Event()
    metrics, health = Metrics(), Health()
    observer: Any = None
    with _unavailable_exits(), stop_on_signals(stop):
        bus = make_bus(settings.resolved_bus())
        store = make_store(settings.resolved_store())
        try:
            if settings.http.enabled and not once:
                observer = _observer(settings, store, metrics, health, dashboard=stages == STAGES)
                log.info("serving health and metrics", extra=kv(host=settings.http.host, port=observer.port))
            bus.ensure_topics(all_topics(settings))
            clock = SystemClock()
            services = [_make_service(s, settings, bus, store, clock, metrics, role) for s in stages]
            log.info("started", extra=kv(stages=",".join(stages), bus=settings.bus.kind, once=once, role=role))
            run_services(services, stop, once=once, health=health)
        finally:
            bus.close()
            store.close()
            if observer is not None:
                observer.stop()
    log.info("stopped", extra=kv(stages=",".join(stages)))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="storywatch")
def main() -> None:
    """storywatch: watch news feeds, cluster articles into stories, alert on watched topics."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@main.command()
@config_option
@once_option
def run(config_path: Path | None, once: bool) -> None:
    """Run all stages in one process (the embedded default needs no servers)."""
    run_stages(load(config_path), STAGES, once)


def _stage_command(stage: str, doc: str) -> Callable[..., None]:
    def command(config_path: Path | None, once: bool) -> None:
        run_stages(load(config_path), (stage,), once)

    command.__doc__ = doc
    command.__name__ = stage
    return command


main.command(name="ingest")(
    config_option(once_option(_stage_command("ingest", "Run the ingest stage: poll feeds, publish articles.")))
)
@main.command(name="enrich")
@config_option
@once_option
@click.option(
    "--role",
    type=click.Choice(["all", "embed", "cluster"]),
    default=None,
    help="all: embed and cluster; embed: a stateless embedding worker (scale these); "
    "cluster: the one story writer. Default: enrich.role from the config.",
)
def enrich_command(config_path: Path | None, once: bool, role: str | None) -> None:
    """Run the enrich stage: embed, cluster into stories, match watched topics."""
    run_stages(load(config_path), ("enrich",), once, role=role)


@main.group(name="alerts", invoke_without_command=True)
@config_option
@once_option
@click.pass_context
def alerts_group(ctx: click.Context, config_path: Path | None, once: bool) -> None:
    """Run the alerts stage (deliver alerts), or inspect the delivery log."""
    if ctx.invoked_subcommand is None:
        run_stages(load(config_path), ("alerts",), once)


@contextmanager
def _store(settings: Settings) -> Iterator[Any]:
    from storywatch.store import make_store

    with _unavailable_exits():
        store = make_store(settings.resolved_store())
        try:
            yield store
        finally:
            store.close()


@alerts_group.command(name="list")
@config_option
@click.option("--state", type=click.Choice(["pending", "sent", "failed", "dead", "held"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def alerts_list(config_path: Path | None, state: str | None, as_json: bool) -> None:
    """List alert deliveries, optionally only those in one state."""
    from alerts.commands import list_alerts

    settings = load(config_path, secrets=False)
    with _store(settings) as store:
        sys.exit(list_alerts(settings, store, state, as_json, sys.stdout))


@alerts_group.command(name="retry")
@config_option
@click.argument("delivery_id")
def alerts_retry(config_path: Path | None, delivery_id: str) -> None:
    """Queue a failed or dead delivery for another attempt."""
    from alerts.commands import retry_alert

    settings = load(config_path, secrets=False)
    with _store(settings) as store:
        sys.exit(retry_alert(settings, store, delivery_id, sys.stdout))


@main.group()
def config() -> None:
    """Validate and show configuration."""


@config.command(name="check")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--print", "show", is_flag=True, help="Print the validated config, secrets masked.")
def config_check(file: Path | None, show: bool) -> None:
    """Validate a config file (default: the configured one); exit 2 on errors."""
    try:
        settings = load_settings(file)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_CONFIG)
    if show:
        click.echo(json.dumps(settings.redacted(), indent=2, default=str))
    click.echo(
        f"config OK: {len(settings.feeds)} feeds, {len(settings.topics)} watched topics, "
        f"{len(settings.alerts.channels)} channels, bus={settings.bus.kind}, store={settings.store.kind}"
    )


@config.command(name="reference")
def config_reference() -> None:
    """Print every config key with its type and default, as Markdown."""
    from enrich.config import ClusterConfig
    from storywatch.settings import Settings
    from storywatch.settings.reference import markdown

    click.echo(markdown(Settings, expand={"enrich.cluster": ClusterConfig}))


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def status(config_path: Path | None, as_json: bool) -> None:
    """Feeds, the most active stories, recent and failed alerts, bus lag; exit 1 if unhealthy."""
    from storywatch.bus import make_bus
    from storywatch.views import status as show_status

    settings = load(config_path, secrets=False)
    with _store(settings) as store, _unavailable_exits():
        bus = make_bus(settings.resolved_bus())
        try:
            code = show_status(settings, store, bus, as_json, sys.stdout)
        finally:
            bus.close()
    sys.exit(code)


@main.command()
@config_option
@click.option("--host", default=None, help="Address to bind (default: http.host).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="Port, 0 for any free one (default: http.port)."
)
def web(config_path: Path | None, host: str | None, port: int | None) -> None:
    """Serve the read-only dashboard until SIGTERM or Ctrl-C."""
    from storywatch.runtime import stop_on_signals
    from storywatch.web import serve

    settings = load(config_path, secrets=False)
    stop = threading.Event()
    with _unavailable_exits(), stop_on_signals(stop):
        serve(settings, host or settings.http.host, settings.http.port if port is None else port, stop)


@main.command()
@config_option
@click.option("--since", default=None, help="Replay stored history this far back: 7d, 36h, 90m.")
@click.option("--input", "input_path", type=click.Path(exists=True, path_type=Path), default=None)
def backtest(config_path: Path | None, since: str | None, input_path: Path | None) -> None:
    """Replay history through NEW config's enrich and alert rules; print what would have fired."""
    from storywatch.backtest import backtest as run_backtest
    from storywatch.backtest import parse_duration

    settings = load(config_path, secrets=False)
    try:
        window = parse_duration(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None

    def services(s: Settings, bus: Any, store: Any, clock: Any) -> list[Any]:
        return [_make_service(stage, s, bus, store, clock, role="all") for stage in ("enrich", "alerts")]

    sys.exit(run_backtest(settings, window, input_path, sys.stdout, make_services=services))


@main.group()
def feeds() -> None:
    """Check and import feeds."""


@feeds.command(name="check")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per feed per line.")
def feeds_check(config_path: Path | None, as_json: bool) -> None:
    """Poll every configured feed once, publish nothing, report per feed; exit 1 if any failed."""
    from ingest.commands import check_feeds

    settings = load(config_path, secrets=False)
    with _store(settings) as store:
        sys.exit(check_feeds(settings, store, as_json, sys.stdout))


@feeds.command(name="enable")
@config_option
@click.argument("feed")
def feeds_enable(config_path: Path | None, feed: str) -> None:
    """Reset a disabled (410) or failing FEED, by name or URL, so it is polled again."""
    from ingest.commands import enable_feed

    settings = load(config_path, secrets=False)
    with _store(settings) as store:
        sys.exit(enable_feed(settings, store, feed, sys.stdout))


@feeds.command(name="import")
@config_option
@click.argument("opml", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--into",
    type=click.Path(path_type=Path),
    default=None,
    help="The config file to add the feeds to: the one that defines feeds: (the default), or, "
    "if none does yet, the main config file or one of its includes.",
)
def feeds_import(config_path: Path | None, opml: Path, into: Path | None) -> None:
    """Add the feeds of an OPML file to the config's feeds.

    Feeds the config already has (by URL, in any of its files) and URLs the fetcher cannot
    read are skipped and reported; nothing is written when the config cannot be read.
    """
    from ingest.commands import import_opml
    from storywatch.settings import default_config_path

    sys.exit(import_opml(opml, config_path or default_config_path(), into))


@main.command()
@config_option
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--assignments", "out_path", required=True, type=click.Path(path_type=Path))
def replay(config_path: Path | None, input_path: Path, out_path: Path) -> None:
    """Stream a JSONL file of articles through normalise and enrich; write story assignments.

    One {"id", "story_id"} line per input line, the id as given. A repeated id is the
    same article delivered again: it gets that article's story. Repeated ids, text fields
    that are not strings and unreadable times are warned about on stderr.
    """
    from enrich.commands import replay as do_replay

    sys.exit(do_replay(_load_quiet(config_path), input_path, out_path))


@main.group()
def topics() -> None:
    """Work with watched topics."""


@topics.command(name="score")
@config_option
@click.option("--topics", "topics_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path))
def topics_score(config_path: Path | None, topics_path: Path, input_path: Path, out_path: Path) -> None:
    """Score every article of a JSONL file against the topics of a YAML file.

    One {"id", "scores", "matched"} line per input line, the id as given; a repeated id
    is scored again. Repeated ids and text fields that are not strings are warned about.
    """
    from enrich.commands import score_topics

    sys.exit(score_topics(_load_quiet(config_path), topics_path, input_path, out_path))


@main.group(name="eval")
def eval_group() -> None:
    """Evaluate storywatch on labelled data."""


@eval_group.command(name="clustering")
@config_option
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--shuffle-seed", type=int, default=None, help="Shuffle the input with this seed first.")
def eval_clustering(config_path: Path | None, input_path: Path, shuffle_seed: int | None) -> None:
    """Replay a labelled JSONL set (gold label in `story`); print BCubed P, R and F1.

    Articles without a label are not scored, nor the later lines of a repeated id; both
    are warned about on stderr with how many lines.
    """
    from enrich.commands import eval_clustering as do_eval

    sys.exit(do_eval(_load_quiet(config_path), input_path, shuffle_seed, sys.stdout))


def _load_quiet(config_path: Path | None) -> Settings:
    """Offline tools work without a config file: defaults apply when none exists."""
    if config_path is None and not Path("config/storywatch.yaml").exists() and "STORYWATCH_CONFIG" not in os.environ:
        configure("WARNING")
        return Settings()
    settings = load(config_path, secrets=False)
    logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    return settings


def _exit_interrupted() -> NoReturn:
    """Say so and exit 130, always.

    Not ``sys.exit``: when Ctrl-C lands while C code runs Python (some extension modules
    do during import, e.g. while the model loads), CPython marks the KeyboardInterrupt
    unhandled even though it is caught here, and at exit kills itself with SIGINT
    instead of returning our code. What is left to do is flushed by hand first; context
    managers (temporary directories, stores) were closed as the exception unwound.
    """
    click.echo("storywatch: interrupted", err=True)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(EXIT_INTERRUPTED)


def entrypoint() -> None:
    try:
        # Not standalone: click would turn Ctrl-C into "Aborted!" and exit 1.
        code = main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _exit_interrupted()
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:  # found after loading, e.g. a model path that is not there
        click.echo(f"storywatch: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except StorywatchError as exc:  # pragma: no cover - last resort
        click.echo(f"storywatch: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
