import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExchangeTokenRequest(_message.Message):
    __slots__ = ("client_assertion", "grant_type", "client_assertion_type", "scopes", "requested_lifetime")
    CLIENT_ASSERTION_FIELD_NUMBER: _ClassVar[int]
    GRANT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ASSERTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    client_assertion: str
    grant_type: str
    client_assertion_type: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    requested_lifetime: _duration_pb2.Duration
    def __init__(self, client_assertion: _Optional[str] = ..., grant_type: _Optional[str] = ..., client_assertion_type: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., requested_lifetime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ExchangeTokenResponse(_message.Message):
    __slots__ = ("access_token", "token_type", "expires_at", "expires_in", "scopes", "user")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    token_type: str
    expires_at: _timestamp_pb2.Timestamp
    expires_in: _duration_pb2.Duration
    scopes: _containers.RepeatedScalarFieldContainer[str]
    user: str
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_in: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., scopes: _Optional[_Iterable[str]] = ..., user: _Optional[str] = ...) -> None: ...

class GetTokenInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTokenInfoResponse(_message.Message):
    __slots__ = ("user", "uid", "client_id", "scopes", "issued_at", "expires_at", "issuer", "audience", "token_id")
    USER_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    user: str
    uid: int
    client_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    issued_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    issuer: str
    audience: str
    token_id: str
    def __init__(self, user: _Optional[str] = ..., uid: _Optional[int] = ..., client_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., issuer: _Optional[str] = ..., audience: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...
