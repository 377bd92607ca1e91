"""The hand-written part of the hpcgate client: channel setup and the `hpcgate` CLI.

Generated stubs live in `hpcgate.v1` (e.g. `hpcgate.v1.status_pb2_grpc.StatusServiceStub`).
"""

from hpcgate.client.channel import DEFAULT_ADDRESS, connect

__all__ = ["DEFAULT_ADDRESS", "connect"]
