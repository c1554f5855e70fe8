"""Build the configured components from the validated config file."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from collectors.health import HealthBoard
from collectors.kafka_source import KafkaSource, KafkaSourceSettings
from collectors.redis_source import RedisStreamSettings, RedisStreamSource
from collectors.runner import CollectorRunner
from telemetry import Store, TelemetryWriter

from .config import WatchloopConfig
from .shell import Component


def build_writer(config: WatchloopConfig, store: Store) -> TelemetryWriter:
    """The one writer every source of inference logs and labels goes through."""
    return TelemetryWriter(
        store, known_models=config.known_models(), max_record_bytes=config.api.max_record_bytes
    )


def build_components(
    config: WatchloopConfig, store: Store, writer: TelemetryWriter, registry: CollectorRegistry
) -> list[Component]:
    """Every component the config asks for, in start order."""
    components: list[Component] = []
    sources = []
    for settings in config.collectors.sources:
        if isinstance(settings, KafkaSourceSettings):
            sources.append(KafkaSource(settings))
        elif isinstance(settings, RedisStreamSettings):
            sources.append(RedisStreamSource(settings))
    pollers: list = []
    if sources or pollers:
        components.append(CollectorRunner(
            store, writer, sources=sources, pollers=pollers,
            settings=config.collectors.runner, health=HealthBoard(registry)))
    return components
