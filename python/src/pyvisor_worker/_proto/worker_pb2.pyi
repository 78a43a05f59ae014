from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_UNSPECIFIED: _ClassVar[Reason]
    REASON_UNKNOWN_TOOL: _ClassVar[Reason]
    REASON_INVALID_ARGUMENT: _ClassVar[Reason]
    REASON_WRONG_CALL_KIND: _ClassVar[Reason]
    REASON_UNKNOWN_SESSION: _ClassVar[Reason]
    REASON_UNAUTHENTICATED: _ClassVar[Reason]
    REASON_MESSAGE_TOO_LARGE: _ClassVar[Reason]
    REASON_UNAVAILABLE: _ClassVar[Reason]
    REASON_INTERNAL: _ClassVar[Reason]

class GoErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GO_ERROR_KIND_UNSPECIFIED: _ClassVar[GoErrorKind]
    GO_ERROR_KIND_UNKNOWN_CALLBACK: _ClassVar[GoErrorKind]
    GO_ERROR_KIND_INVALID_ARGUMENT: _ClassVar[GoErrorKind]
    GO_ERROR_KIND_DEADLINE_EXCEEDED: _ClassVar[GoErrorKind]
    GO_ERROR_KIND_CANCELLED: _ClassVar[GoErrorKind]
    GO_ERROR_KIND_MESSAGE_TOO_LARGE: _ClassVar[GoErrorKind]
    GO_ERROR_KIND_UNAVAILABLE: _ClassVar[GoErrorKind]
    GO_ERROR_KIND_PANIC: _ClassVar[GoErrorKind]
    GO_ERROR_KIND_ERROR: _ClassVar[GoErrorKind]

class CancelReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANCEL_REASON_UNSPECIFIED: _ClassVar[CancelReason]
    CANCEL_REASON_CANCELLED: _ClassVar[CancelReason]
    CANCEL_REASON_DEADLINE_EXCEEDED: _ClassVar[CancelReason]

class MetadataKey(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METADATA_KEY_UNSPECIFIED: _ClassVar[MetadataKey]
    METADATA_KEY_ERROR_REASON: _ClassVar[MetadataKey]
    METADATA_KEY_CORRELATION_ID: _ClassVar[MetadataKey]
    METADATA_KEY_AUTHORIZATION: _ClassVar[MetadataKey]

class ArrayFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARRAY_FORMAT_UNSPECIFIED: _ClassVar[ArrayFormat]
    ARRAY_FORMAT_TENSOR: _ClassVar[ArrayFormat]
    ARRAY_FORMAT_ARROW: _ClassVar[ArrayFormat]
REASON_UNSPECIFIED: Reason
REASON_UNKNOWN_TOOL: Reason
REASON_INVALID_ARGUMENT: Reason
REASON_WRONG_CALL_KIND: Reason
REASON_UNKNOWN_SESSION: Reason
REASON_UNAUTHENTICATED: Reason
REASON_MESSAGE_TOO_LARGE: Reason
REASON_UNAVAILABLE: Reason
REASON_INTERNAL: Reason
GO_ERROR_KIND_UNSPECIFIED: GoErrorKind
GO_ERROR_KIND_UNKNOWN_CALLBACK: GoErrorKind
GO_ERROR_KIND_INVALID_ARGUMENT: GoErrorKind
GO_ERROR_KIND_DEADLINE_EXCEEDED: GoErrorKind
GO_ERROR_KIND_CANCELLED: GoErrorKind
GO_ERROR_KIND_MESSAGE_TOO_LARGE: GoErrorKind
GO_ERROR_KIND_UNAVAILABLE: GoErrorKind
GO_ERROR_KIND_PANIC: GoErrorKind
GO_ERROR_KIND_ERROR: GoErrorKind
CANCEL_REASON_UNSPECIFIED: CancelReason
CANCEL_REASON_CANCELLED: CancelReason
CANCEL_REASON_DEADLINE_EXCEEDED: CancelReason
METADATA_KEY_UNSPECIFIED: MetadataKey
METADATA_KEY_ERROR_REASON: MetadataKey
METADATA_KEY_CORRELATION_ID: MetadataKey
METADATA_KEY_AUTHORIZATION: MetadataKey
ARRAY_FORMAT_UNSPECIFIED: ArrayFormat
ARRAY_FORMAT_TENSOR: ArrayFormat
ARRAY_FORMAT_ARROW: ArrayFormat
WIRE_FIELD_NUMBER: _ClassVar[int]
wire: _descriptor.FieldDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("pid", "python_version", "package_version", "protocol_version", "worker_id", "tools", "callbacks", "code_version")
    PID_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    CALLBACKS_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    pid: int
    python_version: str
    package_version: str
    protocol_version: int
    worker_id: str
    tools: _containers.RepeatedCompositeFieldContainer[ToolSpec]
    callbacks: _containers.RepeatedCompositeFieldContainer[CallbackSpec]
    code_version: str
    def __init__(self, pid: _Optional[int] = ..., python_version: _Optional[str] = ..., package_version: _Optional[str] = ..., protocol_version: _Optional[int] = ..., worker_id: _Optional[str] = ..., tools: _Optional[_Iterable[_Union[ToolSpec, _Mapping]]] = ..., callbacks: _Optional[_Iterable[_Union[CallbackSpec, _Mapping]]] = ..., code_version: _Optional[str] = ...) -> None: ...

class CallbackSpec(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ToolSpec(_message.Message):
    __slots__ = ("name", "description", "parameters_schema", "streaming", "is_async")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    IS_ASYNC_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_schema: str
    streaming: bool
    is_async: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_schema: _Optional[str] = ..., streaming: _Optional[bool] = ..., is_async: _Optional[bool] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("tool", "arguments", "payload", "session_id", "metadata", "correlation_id", "payload_ref", "arrays")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_REF_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    tool: str
    arguments: bytes
    payload: bytes
    session_id: str
    metadata: _containers.ScalarMap[str, str]
    correlation_id: str
    payload_ref: SharedRef
    arrays: _containers.RepeatedCompositeFieldContainer[Array]
    def __init__(self, tool: _Optional[str] = ..., arguments: _Optional[bytes] = ..., payload: _Optional[bytes] = ..., session_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., correlation_id: _Optional[str] = ..., payload_ref: _Optional[_Union[SharedRef, _Mapping]] = ..., arrays: _Optional[_Iterable[_Union[Array, _Mapping]]] = ...) -> None: ...

class Array(_message.Message):
    __slots__ = ("name", "format", "dtype", "shape", "data", "data_ref")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_REF_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: ArrayFormat
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    data_ref: SharedRef
    def __init__(self, name: _Optional[str] = ..., format: _Optional[_Union[ArrayFormat, str]] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., data_ref: _Optional[_Union[SharedRef, _Mapping]] = ...) -> None: ...

class SharedRef(_message.Message):
    __slots__ = ("offset", "length")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    offset: int
    length: int
    def __init__(self, offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("result", "error")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    result: Result
    error: ToolError
    def __init__(self, result: _Optional[_Union[Result, _Mapping]] = ..., error: _Optional[_Union[ToolError, _Mapping]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("json", "payload", "payload_ref", "arrays")
    JSON_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_REF_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    json: bytes
    payload: bytes
    payload_ref: SharedRef
    arrays: _containers.RepeatedCompositeFieldContainer[Array]
    def __init__(self, json: _Optional[bytes] = ..., payload: _Optional[bytes] = ..., payload_ref: _Optional[_Union[SharedRef, _Mapping]] = ..., arrays: _Optional[_Iterable[_Union[Array, _Mapping]]] = ...) -> None: ...

class ToolError(_message.Message):
    __slots__ = ("tool", "type", "message", "traceback", "correlation_id")
    TOOL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    tool: str
    type: str
    message: str
    traceback: str
    correlation_id: str
    def __init__(self, tool: _Optional[str] = ..., type: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class ExecuteStreamResponse(_message.Message):
    __slots__ = ("chunk", "done", "error")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    chunk: Result
    done: StreamDone
    error: ToolError
    def __init__(self, chunk: _Optional[_Union[Result, _Mapping]] = ..., done: _Optional[_Union[StreamDone, _Mapping]] = ..., error: _Optional[_Union[ToolError, _Mapping]] = ...) -> None: ...

class StreamDone(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: int
    def __init__(self, chunks: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("sequence", "sent_unix_nano", "correlation_id", "trace_context")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SENT_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    sent_unix_nano: int
    correlation_id: str
    trace_context: _containers.ScalarMap[str, str]
    def __init__(self, sequence: _Optional[int] = ..., sent_unix_nano: _Optional[int] = ..., correlation_id: _Optional[str] = ..., trace_context: _Optional[_Mapping[str, str]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("sequence", "worker_unix_nano", "in_flight", "pid")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WORKER_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    worker_unix_nano: int
    in_flight: int
    pid: int
    def __init__(self, sequence: _Optional[int] = ..., worker_unix_nano: _Optional[int] = ..., in_flight: _Optional[int] = ..., pid: _Optional[int] = ...) -> None: ...

class OpenSessionRequest(_message.Message):
    __slots__ = ("session_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, session_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class OpenSessionResponse(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class ExportSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ExportSessionResponse(_message.Message):
    __slots__ = ("state", "existed", "code_version")
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    state: bytes
    existed: bool
    code_version: str
    def __init__(self, state: _Optional[bytes] = ..., existed: _Optional[bool] = ..., code_version: _Optional[str] = ...) -> None: ...

class ImportSessionRequest(_message.Message):
    __slots__ = ("session_id", "state", "from_version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    state: bytes
    from_version: str
    def __init__(self, session_id: _Optional[str] = ..., state: _Optional[bytes] = ..., from_version: _Optional[str] = ...) -> None: ...

class ImportSessionResponse(_message.Message):
    __slots__ = ("migrated",)
    MIGRATED_FIELD_NUMBER: _ClassVar[int]
    migrated: bool
    def __init__(self, migrated: _Optional[bool] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("grace_millis",)
    GRACE_MILLIS_FIELD_NUMBER: _ClassVar[int]
    grace_millis: int
    def __init__(self, grace_millis: _Optional[int] = ...) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ("in_flight",)
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    in_flight: int
    def __init__(self, in_flight: _Optional[int] = ...) -> None: ...

class HostFrame(_message.Message):
    __slots__ = ("call_id", "call", "cancel", "ping", "credit", "release", "callback_reply")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_REPLY_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    call: Call
    cancel: Cancel
    ping: HeartbeatRequest
    credit: Credit
    release: Release
    callback_reply: CallbackReply
    def __init__(self, call_id: _Optional[int] = ..., call: _Optional[_Union[Call, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., ping: _Optional[_Union[HeartbeatRequest, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ..., callback_reply: _Optional[_Union[CallbackReply, _Mapping]] = ...) -> None: ...

class Call(_message.Message):
    __slots__ = ("request", "stream", "trace_context", "timeout_micros", "credit")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MICROS_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    request: ExecuteRequest
    stream: bool
    trace_context: _containers.ScalarMap[str, str]
    timeout_micros: int
    credit: int
    def __init__(self, request: _Optional[_Union[ExecuteRequest, _Mapping]] = ..., stream: _Optional[bool] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., timeout_micros: _Optional[int] = ..., credit: _Optional[int] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("offsets",)
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    offsets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, offsets: _Optional[_Iterable[int]] = ...) -> None: ...

class Credit(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: int
    def __init__(self, chunks: _Optional[int] = ...) -> None: ...

class WorkerFrame(_message.Message):
    __slots__ = ("call_id", "result", "chunk", "end", "tool_error", "failed", "body_ended", "pong", "callback", "callback_cancel")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TOOL_ERROR_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    BODY_ENDED_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_CANCEL_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    result: Result
    chunk: Result
    end: StreamDone
    tool_error: ToolError
    failed: CallFailed
    body_ended: BodyEnded
    pong: HeartbeatResponse
    callback: Callback
    callback_cancel: CallbackCancel
    def __init__(self, call_id: _Optional[int] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., chunk: _Optional[_Union[Result, _Mapping]] = ..., end: _Optional[_Union[StreamDone, _Mapping]] = ..., tool_error: _Optional[_Union[ToolError, _Mapping]] = ..., failed: _Optional[_Union[CallFailed, _Mapping]] = ..., body_ended: _Optional[_Union[BodyEnded, _Mapping]] = ..., pong: _Optional[_Union[HeartbeatResponse, _Mapping]] = ..., callback: _Optional[_Union[Callback, _Mapping]] = ..., callback_cancel: _Optional[_Union[CallbackCancel, _Mapping]] = ...) -> None: ...

class CallFailed(_message.Message):
    __slots__ = ("code", "reason", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: str
    message: str
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class BodyEnded(_message.Message):
    __slots__ = ("cancelled",)
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    cancelled: bool
    def __init__(self, cancelled: _Optional[bool] = ...) -> None: ...

class Callback(_message.Message):
    __slots__ = ("callback_id", "name", "arguments", "trace_context", "timeout_micros", "arrays")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CALLBACK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MICROS_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    callback_id: int
    name: str
    arguments: bytes
    trace_context: _containers.ScalarMap[str, str]
    timeout_micros: int
    arrays: _containers.RepeatedCompositeFieldContainer[Array]
    def __init__(self, callback_id: _Optional[int] = ..., name: _Optional[str] = ..., arguments: _Optional[bytes] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., timeout_micros: _Optional[int] = ..., arrays: _Optional[_Iterable[_Union[Array, _Mapping]]] = ...) -> None: ...

class CallbackCancel(_message.Message):
    __slots__ = ("callback_id",)
    CALLBACK_ID_FIELD_NUMBER: _ClassVar[int]
    callback_id: int
    def __init__(self, callback_id: _Optional[int] = ...) -> None: ...

class CallbackReply(_message.Message):
    __slots__ = ("callback_id", "json", "error", "arrays")
    CALLBACK_ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    callback_id: int
    json: bytes
    error: GoError
    arrays: _containers.RepeatedCompositeFieldContainer[Array]
    def __init__(self, callback_id: _Optional[int] = ..., json: _Optional[bytes] = ..., error: _Optional[_Union[GoError, _Mapping]] = ..., arrays: _Optional[_Iterable[_Union[Array, _Mapping]]] = ...) -> None: ...

class GoError(_message.Message):
    __slots__ = ("kind", "message", "callback")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    callback: str
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ..., callback: _Optional[str] = ...) -> None: ...
