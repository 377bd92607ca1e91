"""gRPC servicers: validate requests, call the domain, map results and errors to protobuf."""
