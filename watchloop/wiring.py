"""Build the configured components from the validated config file."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from alerts.evaluator import AlertsCollector, build_evaluator
from collectors.base import MetricPoller, RecordSource
from collectors.dcgm import DcgmExporterPoller, DcgmExporterSettings
from collectors.health import HealthBoard
from collectors.kafka_lag import KafkaLagPoller, KafkaLagSettings
from collectors.kafka_source import KafkaSource, KafkaSourceSettings
from collectors.nvml import NvmlGpuPoller, NvmlSettings
from collectors.redis_source import RedisStreamSettings, RedisStreamSource
from collectors.runner import CollectorRunner
from collectors.serving_metrics import (
    TorchServeMetricsPoller,
    TorchServeMetricsSettings,
    TritonMetricsPoller,
    TritonMetricsSettings,
)
from drift import MonitorRunner
from drift.metrics import MonitorMetrics
from feedback import FeedbackService, build_loop
from serving_adapters import build_deployer
from telemetry import Store, TelemetryWriter
from telemetry.claims import TickClaims
from telemetry.metrics import IngestMetrics, StoreFreshness
from telemetry.rollup import RollupReconciler

from .config import WatchloopConfig
from .shell import Component


def build_writer(config: WatchloopConfig, store: Store,
                 registry: CollectorRegistry | None = None) -> TelemetryWriter:
    """The one writer every source of inference logs and labels goes through."""
    return TelemetryWriter(
        store, known_models=config.known_models(), max_record_bytes=config.api.max_record_bytes,
        max_future_skew=config.ingest.max_future_skew,
        metrics=IngestMetrics(registry) if registry is not None else None,
    )


def build_source(settings: object) -> RecordSource:
    """The record source a ``collectors.sources`` entry selects by its ``type``."""
    if isinstance(settings, KafkaSourceSettings):
        return KafkaSource(settings)
    if isinstance(settings, RedisStreamSettings):
        return RedisStreamSource(settings)
    raise TypeError(f"no source for settings of type {type(settings).__name__}")


def build_poller(settings: object) -> MetricPoller:
    """The metric poller a ``collectors.pollers`` entry selects by its ``type``."""
    if isinstance(settings, TorchServeMetricsSettings):
        return TorchServeMetricsPoller(settings)
    if isinstance(settings, TritonMetricsSettings):
        return TritonMetricsPoller(settings)
    if isinstance(settings, NvmlSettings):
        return NvmlGpuPoller(settings)
    if isinstance(settings, DcgmExporterSettings):
        return DcgmExporterPoller(settings)
    if isinstance(settings, KafkaLagSettings):
        return KafkaLagPoller(settings)
    raise TypeError(f"no poller for settings of type {type(settings).__name__}")


def build_feedback(config: WatchloopConfig, store: Store) -> FeedbackService | None:
    """The feedback loop as a component, deploying through the ``serving:`` backend."""
    if config.feedback is None:
        return None
    serving = config.serving
    deployer = build_deployer(serving, store) if serving is not None else None
    payload_log = (serving.payload_log.server_config()
                   if serving is not None and serving.payload_log else None)
    loop = build_loop(config.feedback, store, data_dir=config.data_dir, deployer=deployer,
                      payload_log=payload_log)
    models = tuple(m.name for m in config.models) or tuple(config.feedback.models)
    return FeedbackService(loop, models=models, schedules=config.feedback.schedules(),
                           alias_poll=config.feedback.alias_poll)


def build_components(
    config: WatchloopConfig, store: Store, writer: TelemetryWriter, registry: CollectorRegistry
) -> list[Component]:
    """Every component the config asks for, in start order."""
    registry.register(StoreFreshness(store))
    components: list[Component] = [RollupReconciler(
        store, interval_s=config.ingest.rollup_check_interval.total_seconds())]
    sources = [build_source(settings) for settings in config.collectors.sources]
    pollers = [build_poller(settings) for settings in config.collectors.pollers]
    if sources or pollers:
        components.append(CollectorRunner(
            store, writer, sources=sources, pollers=pollers,
            settings=config.collectors.runner, health=HealthBoard(registry)))
    feedback = build_feedback(config, store)
    if feedback is not None:
        components.append(feedback)
    if config.alerts is not None:
        alerting = config.alerts.model_copy(update={"rules": config.alert_rules()})
        evaluator = build_evaluator(alerting, store, retrain=feedback)
        registry.register(AlertsCollector(evaluator.alerts))
        components.append(evaluator)
    if config.monitors is not None:
        # Every process sharing a store may run the monitors; each tick runs in one of them.
        components.append(MonitorRunner(config.monitors, store,
                                        claims=TickClaims(store, "monitors"),
                                        metrics=MonitorMetrics(registry)))
    return components
