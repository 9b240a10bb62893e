"""An OTLP/gRPC receiver on loopback for the interoperability check: it stands where an
OpenTelemetry collector would, and writes what the observatory exports, one JSON object a line
(service name, then the trace id, name and attributes of each span, or the name of each metric).

Usage: otlp_receiver.py PORT OUTPUT_FILE
"""

import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

port, output = sys.argv[1], sys.argv[2]
lock = threading.Lock()


def write(records):
    with lock, open(output, "a", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")


def service_name(resource):
    return next((kv.value.string_value for kv in resource.attributes if kv.key == "service.name"), "")


def value(any_value):
    return getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof("value") else None


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        write({"signal": "span", "service": service_name(rs.resource), "trace_id": span.trace_id.hex(),
               "name": span.name, "attributes": {kv.key: value(kv.value) for kv in span.attributes}}
              for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(self, request, context):
        write({"signal": "metric", "service": service_name(rm.resource), "name": m.name}
              for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)
        return metrics_service_pb2.ExportMetricsServiceResponse()


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
server.wait_for_termination()
