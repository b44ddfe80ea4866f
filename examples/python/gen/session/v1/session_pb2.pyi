import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Session(_message.Message):
    __slots__ = ("id", "metadata", "operation", "profile", "device", "os", "app", "utm", "context", "properties", "traits", "aux", "revision", "session_index", "previous_session_id", "activity", "merged_from_profile_ids", "traffic")
    ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    UTM_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    AUX_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SESSION_INDEX_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    MERGED_FROM_PROFILE_IDS_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    id: str
    metadata: SessionMetadata
    operation: Operation
    profile: Profile
    device: Device
    os: Os
    app: App
    utm: Utm
    context: _struct_pb2.Struct
    properties: _struct_pb2.Struct
    traits: _struct_pb2.Struct
    aux: _struct_pb2.Struct
    revision: int
    session_index: int
    previous_session_id: str
    activity: Activity
    merged_from_profile_ids: _containers.RepeatedScalarFieldContainer[str]
    traffic: Traffic
    def __init__(self, id: _Optional[str] = ..., metadata: _Optional[_Union[SessionMetadata, _Mapping]] = ..., operation: _Optional[_Union[Operation, _Mapping]] = ..., profile: _Optional[_Union[Profile, _Mapping]] = ..., device: _Optional[_Union[Device, _Mapping]] = ..., os: _Optional[_Union[Os, _Mapping]] = ..., app: _Optional[_Union[App, _Mapping]] = ..., utm: _Optional[_Union[Utm, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., properties: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., traits: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., aux: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., revision: _Optional[int] = ..., session_index: _Optional[int] = ..., previous_session_id: _Optional[str] = ..., activity: _Optional[_Union[Activity, _Mapping]] = ..., merged_from_profile_ids: _Optional[_Iterable[str]] = ..., traffic: _Optional[_Union[Traffic, _Mapping]] = ...) -> None: ...

class Traffic(_message.Message):
    __slots__ = ("referrer", "referrer_host", "source", "medium", "channel_group", "click_id")
    REFERRER_FIELD_NUMBER: _ClassVar[int]
    REFERRER_HOST_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MEDIUM_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_GROUP_FIELD_NUMBER: _ClassVar[int]
    CLICK_ID_FIELD_NUMBER: _ClassVar[int]
    referrer: str
    referrer_host: str
    source: str
    medium: str
    channel_group: str
    click_id: str
    def __init__(self, referrer: _Optional[str] = ..., referrer_host: _Optional[str] = ..., source: _Optional[str] = ..., medium: _Optional[str] = ..., channel_group: _Optional[str] = ..., click_id: _Optional[str] = ...) -> None: ...

class Activity(_message.Message):
    __slots__ = ("page_views", "entry_page", "exit_page", "end_reason")
    PAGE_VIEWS_FIELD_NUMBER: _ClassVar[int]
    ENTRY_PAGE_FIELD_NUMBER: _ClassVar[int]
    EXIT_PAGE_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    page_views: int
    entry_page: str
    exit_page: str
    end_reason: str
    def __init__(self, page_views: _Optional[int] = ..., entry_page: _Optional[str] = ..., exit_page: _Optional[str] = ..., end_reason: _Optional[str] = ...) -> None: ...

class SessionMetadata(_message.Message):
    __slots__ = ("time", "channel", "aux", "status")
    TIME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    AUX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    time: SessionTime
    channel: str
    aux: _struct_pb2.Struct
    status: str
    def __init__(self, time: _Optional[_Union[SessionTime, _Mapping]] = ..., channel: _Optional[str] = ..., aux: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., status: _Optional[str] = ...) -> None: ...

class SessionTime(_message.Message):
    __slots__ = ("insert", "create", "update", "timestamp", "duration", "weekday")
    INSERT_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    WEEKDAY_FIELD_NUMBER: _ClassVar[int]
    insert: _timestamp_pb2.Timestamp
    create: _timestamp_pb2.Timestamp
    update: _timestamp_pb2.Timestamp
    timestamp: float
    duration: int
    weekday: int
    def __init__(self, insert: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timestamp: _Optional[float] = ..., duration: _Optional[int] = ..., weekday: _Optional[int] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("new", "update", "segment", "merge")
    NEW_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    MERGE_FIELD_NUMBER: _ClassVar[int]
    new: bool
    update: bool
    segment: bool
    merge: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, new: _Optional[bool] = ..., update: _Optional[bool] = ..., segment: _Optional[bool] = ..., merge: _Optional[_Iterable[str]] = ...) -> None: ...

class Profile(_message.Message):
    __slots__ = ("id", "primary_id", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    primary_id: str
    metadata: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., primary_id: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("name", "brand", "model", "type", "touch", "ip", "resolution", "geo", "color_depth", "orientation")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TOUCH_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    GEO_FIELD_NUMBER: _ClassVar[int]
    COLOR_DEPTH_FIELD_NUMBER: _ClassVar[int]
    ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    brand: str
    model: str
    type: str
    touch: bool
    ip: str
    resolution: str
    geo: Geo
    color_depth: str
    orientation: str
    def __init__(self, name: _Optional[str] = ..., brand: _Optional[str] = ..., model: _Optional[str] = ..., type: _Optional[str] = ..., touch: _Optional[bool] = ..., ip: _Optional[str] = ..., resolution: _Optional[str] = ..., geo: _Optional[_Union[Geo, _Mapping]] = ..., color_depth: _Optional[str] = ..., orientation: _Optional[str] = ...) -> None: ...

class Geo(_message.Message):
    __slots__ = ("country", "city", "county", "postal", "latitude", "longitude", "location")
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    COUNTY_FIELD_NUMBER: _ClassVar[int]
    POSTAL_FIELD_NUMBER: _ClassVar[int]
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    country: Country
    city: str
    county: str
    postal: str
    latitude: str
    longitude: str
    location: str
    def __init__(self, country: _Optional[_Union[Country, _Mapping]] = ..., city: _Optional[str] = ..., county: _Optional[str] = ..., postal: _Optional[str] = ..., latitude: _Optional[str] = ..., longitude: _Optional[str] = ..., location: _Optional[str] = ...) -> None: ...

class Country(_message.Message):
    __slots__ = ("name", "code")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    code: str
    def __init__(self, name: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class Os(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class App(_message.Message):
    __slots__ = ("type", "name", "version", "language", "bot", "resolution")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    BOT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    version: str
    language: str
    bot: bool
    resolution: str
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., language: _Optional[str] = ..., bot: _Optional[bool] = ..., resolution: _Optional[str] = ...) -> None: ...

class Utm(_message.Message):
    __slots__ = ("source", "medium", "campaign", "term", "content")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MEDIUM_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    source: str
    medium: str
    campaign: str
    term: str
    content: str
    def __init__(self, source: _Optional[str] = ..., medium: _Optional[str] = ..., campaign: _Optional[str] = ..., term: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...
