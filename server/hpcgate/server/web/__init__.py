"""The API over HTTP for browsers and curl: Connect and gRPC-Web (connectrpc) served by
hypercorn beside the gRPC listener, each call forwarded to this process's own gRPC server
so that it meets the same authentication, scopes, limits, validation and errors; and the
public status page (docs/http.md)."""
