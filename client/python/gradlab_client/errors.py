"""The one exception every failed call raises."""
from typing import Optional

import grpc


class GradlabError(Exception):
    """A call gradlabd refused or could not answer.

    `code` is the gRPC status code (grpc.StatusCode.NOT_FOUND, INVALID_ARGUMENT, ...) and
    `message` the server's own words, e.g. "spec.epochs: 0 is out of range [1, 1000]".
    """

    def __init__(self, code: grpc.StatusCode, message: str, method: Optional[str] = None):
        self.code = code
        self.message = message
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{code.name}: {message}")

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, method: str) -> "GradlabError":
        return cls(error.code(), error.details() or "", method)
