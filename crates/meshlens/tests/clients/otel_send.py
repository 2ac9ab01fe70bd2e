"""Sends one small trace to meshlens with the OpenTelemetry Python SDK and prints what it
sent as JSON, so the Rust test can compare it with what the query APIs return.

usage: otel_send.py {otlp-http|otlp-grpc|zipkin} ENDPOINT SERVICE
"""
import json
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

mode, endpoint, service = sys.argv[1:4]
if mode == "otlp-http":
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=endpoint)
elif mode == "otlp-grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
elif mode == "zipkin":
    from opentelemetry.exporter.zipkin.json import ZipkinExporter
    exporter = ZipkinExporter(endpoint=endpoint)
else:
    sys.exit(f"unknown mode {mode}")

provider = TracerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "test"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("meshlens.test", "1.0")

sent = []
with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
    root.set_attribute("http.method", "GET")
    root.set_attribute("http.status_code", 200)
    root.add_event("cache miss", {"key": "cart-42"})
    with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT) as child:
        child.set_attribute("peer.service", "payments")
        child.set_status(Status(StatusCode.ERROR, "card declined"))
        cc = child.get_span_context()
    rc = root.get_span_context()
sent.append({"span_id": format(rc.span_id, "016x"), "parent_id": None, "name": "get /checkout", "kind": "SERVER"})
sent.append({"span_id": format(cc.span_id, "016x"), "parent_id": format(rc.span_id, "016x"), "name": "charge card", "kind": "CLIENT"})
provider.shutdown()
print(json.dumps({"trace_id": format(rc.trace_id, "032x"), "service": service, "spans": sent}))
