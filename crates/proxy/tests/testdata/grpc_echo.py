"""A gRPC peer for crates/proxy/tests/grpc_streaming.rs, on grpcio's generic handlers (no
generated code; messages are raw bytes).

  grpc_echo.py server            serves on 127.0.0.1:0, prints "port N", runs until stdin closes
  grpc_echo.py client ADDR AUTH  calls through ADDR with :authority AUTH, prints one JSON line

Service echo.Echo:
  Sum   (client streaming) -> the messages joined with "+"
  Chat  (bidirectional)    -> "echo:" + each message, one reply per message; the client sends
                              the next message only after the previous reply came back, so a
                              proxy that waited for the whole request body would deadlock
  Fail  (client streaming) -> aborts with NOT_FOUND after reading the messages
"""

import json
import queue
import sys
from concurrent import futures

import grpc


def ident(b):
    return b


def sum_(requests, context):
    return b"+".join(requests)


def chat(requests, context):
    for r in requests:
        yield b"echo:" + r


def fail(requests, context):
    for _ in requests:
        pass
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


class Handlers(grpc.GenericRpcHandler):
    def service(self, details):
        kinds = {
            "/echo.Echo/Sum": (grpc.stream_unary_rpc_method_handler, sum_),
            "/echo.Echo/Chat": (grpc.stream_stream_rpc_method_handler, chat),
            "/echo.Echo/Fail": (grpc.stream_unary_rpc_method_handler, fail),
        }
        k = kinds.get(details.method)
        if k is None:
            return None
        make, fn = k
        return make(fn, request_deserializer=ident, response_serializer=ident)


def server():
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    s.add_generic_rpc_handlers((Handlers(),))
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    print(f"port {port}", flush=True)
    sys.stdin.read()
    s.stop(0)


def client(addr, authority):
    ch = grpc.insecure_channel(
        addr,
        options=[("grpc.default_authority", authority), ("grpc.enable_http_proxy", 0)],
    )
    out = {}
    total = ch.stream_unary("/echo.Echo/Sum", request_serializer=ident, response_deserializer=ident)
    joined = total(iter([b"a", b"bb", b"ccc", b"x" * 70000]), timeout=20).decode()
    out["sum"] = joined[:12]
    out["sum_len"] = len(joined)

    # Lock-step: message i+1 is sent only once reply i has arrived.
    replies = queue.Queue()
    def requests():
        for i in range(5):
            yield f"m{i}".encode()
            replies.get(timeout=20)
    call = ch.stream_stream("/echo.Echo/Chat", request_serializer=ident, response_deserializer=ident)
    got = []
    for r in call(requests(), timeout=20):
        got.append(r.decode())
        replies.put(r)
    out["chat"] = got

    failing = ch.stream_unary("/echo.Echo/Fail", request_serializer=ident, response_deserializer=ident)
    try:
        failing(iter([b"q"]), timeout=20)
        out["fail"] = "OK"
    except grpc.RpcError as e:
        out["fail"] = e.code().name
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server()
    else:
        client(sys.argv[2], sys.argv[3])
