import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from session.v1 import session_pb2 as _session_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatsGroupBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATS_GROUP_BY_UNSPECIFIED: _ClassVar[StatsGroupBy]
    STATS_GROUP_BY_CHANNEL: _ClassVar[StatsGroupBy]
    STATS_GROUP_BY_STATUS: _ClassVar[StatsGroupBy]
    STATS_GROUP_BY_DEVICE_TYPE: _ClassVar[StatsGroupBy]
    STATS_GROUP_BY_OS_NAME: _ClassVar[StatsGroupBy]
    STATS_GROUP_BY_APP_NAME: _ClassVar[StatsGroupBy]
    STATS_GROUP_BY_COUNTRY_CODE: _ClassVar[StatsGroupBy]
    STATS_GROUP_BY_UTM_SOURCE: _ClassVar[StatsGroupBy]
    STATS_GROUP_BY_CHANNEL_GROUP: _ClassVar[StatsGroupBy]
    STATS_GROUP_BY_SOURCE: _ClassVar[StatsGroupBy]

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    CHANGE_KIND_INITIAL: _ClassVar[ChangeKind]
    CHANGE_KIND_CREATED: _ClassVar[ChangeKind]
    CHANGE_KIND_UPDATED: _ClassVar[ChangeKind]
    CHANGE_KIND_DELETED: _ClassVar[ChangeKind]
    CHANGE_KIND_ENTERED_FILTER: _ClassVar[ChangeKind]
    CHANGE_KIND_LEFT_FILTER: _ClassVar[ChangeKind]
STATS_GROUP_BY_UNSPECIFIED: StatsGroupBy
STATS_GROUP_BY_CHANNEL: StatsGroupBy
STATS_GROUP_BY_STATUS: StatsGroupBy
STATS_GROUP_BY_DEVICE_TYPE: StatsGroupBy
STATS_GROUP_BY_OS_NAME: StatsGroupBy
STATS_GROUP_BY_APP_NAME: StatsGroupBy
STATS_GROUP_BY_COUNTRY_CODE: StatsGroupBy
STATS_GROUP_BY_UTM_SOURCE: StatsGroupBy
STATS_GROUP_BY_CHANNEL_GROUP: StatsGroupBy
STATS_GROUP_BY_SOURCE: StatsGroupBy
CHANGE_KIND_UNSPECIFIED: ChangeKind
CHANGE_KIND_INITIAL: ChangeKind
CHANGE_KIND_CREATED: ChangeKind
CHANGE_KIND_UPDATED: ChangeKind
CHANGE_KIND_DELETED: ChangeKind
CHANGE_KIND_ENTERED_FILTER: ChangeKind
CHANGE_KIND_LEFT_FILTER: ChangeKind

class TouchSessionRequest(_message.Message):
    __slots__ = ("id", "page_url", "at", "client_ip")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_URL_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    id: str
    page_url: str
    at: _timestamp_pb2.Timestamp
    client_ip: str
    def __init__(self, id: _Optional[str] = ..., page_url: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., client_ip: _Optional[str] = ...) -> None: ...

class TouchSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ...) -> None: ...

class MergeProfilesRequest(_message.Message):
    __slots__ = ("source_profile_ids", "target_profile_id")
    SOURCE_PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    TARGET_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    source_profile_ids: _containers.RepeatedScalarFieldContainer[str]
    target_profile_id: str
    def __init__(self, source_profile_ids: _Optional[_Iterable[str]] = ..., target_profile_id: _Optional[str] = ...) -> None: ...

class MergeProfilesResponse(_message.Message):
    __slots__ = ("moved_sessions", "moved_session_ids")
    MOVED_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    MOVED_SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    moved_sessions: int
    moved_session_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, moved_sessions: _Optional[int] = ..., moved_session_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class EraseProfileRequest(_message.Message):
    __slots__ = ("profile_id",)
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    def __init__(self, profile_id: _Optional[str] = ...) -> None: ...

class EraseProfileResponse(_message.Message):
    __slots__ = ("erased_sessions",)
    ERASED_SESSIONS_FIELD_NUMBER: _ClassVar[int]
    erased_sessions: int
    def __init__(self, erased_sessions: _Optional[int] = ...) -> None: ...

class StatsFilter(_message.Message):
    __slots__ = ("profile_id", "status", "channel")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    status: str
    channel: str
    def __init__(self, profile_id: _Optional[str] = ..., status: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

class GetSessionStatsRequest(_message.Message):
    __slots__ = ("filter", "group_by", "since", "online_window", "breakdowns", "started_per_minute")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    ONLINE_WINDOW_FIELD_NUMBER: _ClassVar[int]
    BREAKDOWNS_FIELD_NUMBER: _ClassVar[int]
    STARTED_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    filter: StatsFilter
    group_by: StatsGroupBy
    since: _timestamp_pb2.Timestamp
    online_window: _duration_pb2.Duration
    breakdowns: _containers.RepeatedScalarFieldContainer[StatsGroupBy]
    started_per_minute: bool
    def __init__(self, filter: _Optional[_Union[StatsFilter, _Mapping]] = ..., group_by: _Optional[_Union[StatsGroupBy, str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., online_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., breakdowns: _Optional[_Iterable[_Union[StatsGroupBy, str]]] = ..., started_per_minute: _Optional[bool] = ...) -> None: ...

class StatsGroup(_message.Message):
    __slots__ = ("key", "count")
    KEY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    key: str
    count: int
    def __init__(self, key: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class GetSessionStatsResponse(_message.Message):
    __slots__ = ("total", "groups", "online_now", "computed_at", "breakdowns", "started_per_minute")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_NOW_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_AT_FIELD_NUMBER: _ClassVar[int]
    BREAKDOWNS_FIELD_NUMBER: _ClassVar[int]
    STARTED_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    total: int
    groups: _containers.RepeatedCompositeFieldContainer[StatsGroup]
    online_now: int
    computed_at: _timestamp_pb2.Timestamp
    breakdowns: _containers.RepeatedCompositeFieldContainer[StatsBreakdown]
    started_per_minute: _containers.RepeatedCompositeFieldContainer[MinuteCount]
    def __init__(self, total: _Optional[int] = ..., groups: _Optional[_Iterable[_Union[StatsGroup, _Mapping]]] = ..., online_now: _Optional[int] = ..., computed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., breakdowns: _Optional[_Iterable[_Union[StatsBreakdown, _Mapping]]] = ..., started_per_minute: _Optional[_Iterable[_Union[MinuteCount, _Mapping]]] = ...) -> None: ...

class StatsBreakdown(_message.Message):
    __slots__ = ("group_by", "groups")
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    group_by: StatsGroupBy
    groups: _containers.RepeatedCompositeFieldContainer[StatsGroup]
    def __init__(self, group_by: _Optional[_Union[StatsGroupBy, str]] = ..., groups: _Optional[_Iterable[_Union[StatsGroup, _Mapping]]] = ...) -> None: ...

class MinuteCount(_message.Message):
    __slots__ = ("start", "count")
    START_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    count: int
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("session", "user_agent", "page_url", "request_id", "client_ip", "referrer")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_URL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_FIELD_NUMBER: _ClassVar[int]
    REFERRER_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    user_agent: str
    page_url: str
    request_id: str
    client_ip: str
    referrer: str
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ..., user_agent: _Optional[str] = ..., page_url: _Optional[str] = ..., request_id: _Optional[str] = ..., client_ip: _Optional[str] = ..., referrer: _Optional[str] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ...) -> None: ...

class UpdateSessionRequest(_message.Message):
    __slots__ = ("session", "update_mask", "expected_revision", "user_agent", "page_url")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_URL_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    update_mask: _field_mask_pb2.FieldMask
    expected_revision: int
    user_agent: str
    page_url: str
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., expected_revision: _Optional[int] = ..., user_agent: _Optional[str] = ..., page_url: _Optional[str] = ...) -> None: ...

class UpdateSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ...) -> None: ...

class DeleteSessionRequest(_message.Message):
    __slots__ = ("id", "expected_revision")
    ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    id: str
    expected_revision: int
    def __init__(self, id: _Optional[str] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class DeleteSessionResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("profile_id", "status", "channel", "insert_from", "insert_to", "page_size", "page_token", "channel_group")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    INSERT_FROM_FIELD_NUMBER: _ClassVar[int]
    INSERT_TO_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_GROUP_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    status: str
    channel: str
    insert_from: _timestamp_pb2.Timestamp
    insert_to: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    channel_group: str
    def __init__(self, profile_id: _Optional[str] = ..., status: _Optional[str] = ..., channel: _Optional[str] = ..., insert_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., insert_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., channel_group: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_session_pb2.Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[_session_pb2.Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchFilter(_message.Message):
    __slots__ = ("profile_id", "ids", "status", "channel", "channel_group")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_GROUP_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    status: str
    channel: str
    channel_group: str
    def __init__(self, profile_id: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., status: _Optional[str] = ..., channel: _Optional[str] = ..., channel_group: _Optional[str] = ...) -> None: ...

class WatchSessionsRequest(_message.Message):
    __slots__ = ("filter", "after_revision", "send_initial", "heartbeat_interval")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    SEND_INITIAL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    filter: WatchFilter
    after_revision: int
    send_initial: bool
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, filter: _Optional[_Union[WatchFilter, _Mapping]] = ..., after_revision: _Optional[int] = ..., send_initial: _Optional[bool] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SessionChange(_message.Message):
    __slots__ = ("kind", "session", "revision", "erased")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ERASED_FIELD_NUMBER: _ClassVar[int]
    kind: ChangeKind
    session: _session_pb2.Session
    revision: int
    erased: bool
    def __init__(self, kind: _Optional[_Union[ChangeKind, str]] = ..., session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ..., revision: _Optional[int] = ..., erased: _Optional[bool] = ...) -> None: ...

class InitialStateEnd(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class WatchSessionsResponse(_message.Message):
    __slots__ = ("change", "initial_state_end", "progress")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_STATE_END_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    change: SessionChange
    initial_state_end: InitialStateEnd
    progress: Progress
    def __init__(self, change: _Optional[_Union[SessionChange, _Mapping]] = ..., initial_state_end: _Optional[_Union[InitialStateEnd, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class WatchSessionStatsRequest(_message.Message):
    __slots__ = ("filter", "group_by", "since", "online_window", "min_interval", "heartbeat_interval", "breakdowns", "started_per_minute")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    ONLINE_WINDOW_FIELD_NUMBER: _ClassVar[int]
    MIN_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    BREAKDOWNS_FIELD_NUMBER: _ClassVar[int]
    STARTED_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    filter: StatsFilter
    group_by: StatsGroupBy
    since: _timestamp_pb2.Timestamp
    online_window: _duration_pb2.Duration
    min_interval: _duration_pb2.Duration
    heartbeat_interval: _duration_pb2.Duration
    breakdowns: _containers.RepeatedScalarFieldContainer[StatsGroupBy]
    started_per_minute: bool
    def __init__(self, filter: _Optional[_Union[StatsFilter, _Mapping]] = ..., group_by: _Optional[_Union[StatsGroupBy, str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., online_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., breakdowns: _Optional[_Iterable[_Union[StatsGroupBy, str]]] = ..., started_per_minute: _Optional[bool] = ...) -> None: ...

class StatsHeartbeat(_message.Message):
    __slots__ = ("checked_at", "revision")
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    checked_at: _timestamp_pb2.Timestamp
    revision: int
    def __init__(self, checked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class WatchSessionStatsResponse(_message.Message):
    __slots__ = ("stats", "heartbeat")
    STATS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    stats: GetSessionStatsResponse
    heartbeat: StatsHeartbeat
    def __init__(self, stats: _Optional[_Union[GetSessionStatsResponse, _Mapping]] = ..., heartbeat: _Optional[_Union[StatsHeartbeat, _Mapping]] = ...) -> None: ...
