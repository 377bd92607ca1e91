"""Protobuf conversion, kept at the edge: domain records in, API messages out (and the
few enum mappings back). Nothing below `hpcgate.server.api` builds or reads messages."""
