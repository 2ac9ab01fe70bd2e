"""Exports a fixed set of metrics to meshlens with the OpenTelemetry Python SDK (one
collection, at shutdown) and prints the SDK version as JSON, so the Rust test can build the
target_info labels it expects.

usage: otel_metrics_send.py {otlp-http|otlp-grpc} ENDPOINT SERVICE
"""
import json
import sys

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.version import __version__ as sdk_version

mode, endpoint, service = sys.argv[1:4]
if mode == "otlp-http":
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    exporter = OTLPMetricExporter(endpoint=endpoint)
elif mode == "otlp-grpc":
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
else:
    sys.exit(f"unknown mode {mode}")

# The SDK only logs a failed export; record each result so a failure fails the script.
results = []
_export = exporter.export

def export(*args, **kwargs):
    result = _export(*args, **kwargs)
    results.append(result)
    return result

exporter.export = export

# A long interval: the only export is the one shutdown() makes.
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
resource = Resource.create({
    "service.name": service,
    "service.namespace": "shop",
    "service.instance.id": "pod-1",
    "deployment.environment": "test",
})
views = [View(instrument_name="http.server.duration",
              aggregation=ExplicitBucketHistogramAggregation(boundaries=[5.0, 50.0, 100.0])),
         View(instrument_name="rpc.server.duration",
              aggregation=ExponentialBucketHistogramAggregation())]
provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
meter = provider.get_meter("meshlens.test", "1.0")

requests = meter.create_counter("http.server.requests", unit="{request}", description="Requests served.")
requests.add(5, {"http.method": "GET", "http.route": "/checkout"})
requests.add(2, {"http.method": "GET", "http.route": "/checkout"})
requests.add(1, {"http.method": "POST", "http.route": "/checkout"})

depth = meter.create_up_down_counter("messaging.queue.depth", unit="{message}")
depth.add(10, {"queue": "orders"})
depth.add(-3, {"queue": "orders"})

def cpu(_options: CallbackOptions):
    yield Observation(0.25, {"cpu": "0"})

meter.create_observable_gauge("cpu.utilization", callbacks=[cpu], unit="1")

duration = meter.create_histogram("http.server.duration", unit="ms")
for v in (3, 7, 30, 120):
    duration.record(v, {"http.route": "/checkout"})

# An exponential histogram: a native histogram in Prometheus 3 (scale above 8 merged to 8).
rpc = meter.create_histogram("rpc.server.duration", unit="s")
for v in (0.1, 0.2, 0.4, 0.8):
    rpc.record(v, {"rpc.method": "Get"})

memory = meter.create_up_down_counter("process.memory.usage", unit="By")
memory.add(1048576)

provider.shutdown()
if not results or any(r != MetricExportResult.SUCCESS for r in results):
    sys.exit(f"export failed: {results}")
print(json.dumps({"sdk_version": sdk_version}))
