"""Stand-ins for a failed gRPC call and for a stub method, shared by the
tests that need no server."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2


class FakeError(grpc.RpcError):
    """What a failed call looks like to the client: code, details, trailers."""

    def __init__(self, code, message="", reason=None, metadata=None, domain="sessiond",
                 status_code=None, status_message=None):
        self._code, self._message = code, message
        self._trailers = ()
        if reason is not None:
            info = error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata or {})
            detail = any_pb2.Any()
            detail.Pack(info)
            status = status_pb2.Status(
                code=code.value[0] if status_code is None else status_code,
                message=message if status_message is None else status_message,
                details=[detail],
            )
            self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self):
        return self._code

    def details(self):
        return self._message

    def trailing_metadata(self):
        return self._trailers


class Recorder:
    """Stands in for a stub method: fails with the queued errors, then answers."""

    def __init__(self, errors_, answer):
        self.errors, self.answer, self.calls = list(errors_), answer, []

    def __call__(self, request, timeout=None, metadata=None):
        self.calls.append((request, timeout))
        if self.errors:
            raise self.errors.pop(0)
        return self.answer


class AsyncRecorder(Recorder):
    """The same for a grpc.aio stub method: the call is awaited."""

    async def __call__(self, request, timeout=None, metadata=None):
        return Recorder.__call__(self, request, timeout, metadata)
