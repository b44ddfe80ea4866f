"""The Python example client of session-service.

The code in gen/ is generated from proto/ by grpcio-tools (`python -m grpc_tools.protoc`, see
scripts/clients.sh generate). This script runs one scenario against a running server and
checks every answer; any failed check exits with status 1.

    pip install -r examples/python/requirements.txt
    python examples/python/client.py 127.0.0.1:50051
    python examples/python/client.py --cacert ca.crt [--cert client.crt --key client.key] localhost:50051

With --cacert the channel uses TLS (and presents a client certificate with --cert/--key, for a
server that requires mTLS). An API key is read from the SESSION_API_KEY environment variable (or
--api-key, which other users of the machine can see in the process list) and sent with every
call as `authorization: Bearer <key>`.

Scenario: create a session (enriched from a user agent and a campaign URL), update one field
through a field mask, get it, list it by profile, watch its changes from the create's revision
(the update arrives as CHANGE_KIND_UPDATED), and read the error details of a NOT_FOUND and an
INVALID_ARGUMENT answer (google.rpc.ErrorInfo / BadRequest, decoded with grpcio-status).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402
from google.protobuf import field_mask_pb2  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402

from session.v1 import session_pb2, session_service_pb2, session_service_pb2_grpc  # noqa: E402

IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
CAMPAIGN_URL = "https://shop.example/?utm_source=news&utm_medium=email&utm_campaign=spring"
TIMEOUT = 10  # seconds, per call


def check(ok, message):
    if not ok:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)


def error_details(err):
    """The ErrorInfo and the BadRequest field names of a failed call."""
    info, fields = None, []
    status = rpc_status.from_call(err)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return info, fields


def expect_error(call, code):
    try:
        call()
    except grpc.RpcError as err:
        check(err.code() == code, f"code {err.code()}, want {code}")
        return err
    check(False, f"call succeeded, want {code}")


class _BearerKey(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <key>` to every call (unary and streaming)."""

    def __init__(self, key):
        self._entry = ("authorization", f"Bearer {key}")

    def _with_key(self, details):
        return details._replace(metadata=list(details.metadata or []) + [self._entry])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_key(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_key(details), request)


def open_channel(args):
    """A plaintext channel, or TLS with --cacert (mTLS with --cert and --key)."""
    if not args.cacert:
        check(not (args.cert or args.key), "--cert and --key need --cacert (TLS)")
        return grpc.insecure_channel(args.target)
    check(bool(args.cert) == bool(args.key), "give --cert and --key together")

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.cacert),
        private_key=read(args.key) if args.key else None,
        certificate_chain=read(args.cert) if args.cert else None,
    )
    return grpc.secure_channel(args.target, credentials)


def main(args):
    with open_channel(args) as raw_channel:
        api_key = args.api_key or os.environ.get("SESSION_API_KEY")
        channel = grpc.intercept_channel(raw_channel, _BearerKey(api_key)) if api_key else raw_channel
        client = session_service_pb2_grpc.SessionServiceStub(channel)
        profile = f"python-example-{time.time_ns()}"

        # Create: the server parses the user agent and the campaign parameters.
        created = client.CreateSession(
            session_service_pb2.CreateSessionRequest(
                session=session_pb2.Session(
                    profile=session_pb2.Profile(id=profile),
                    metadata=session_pb2.SessionMetadata(channel="web"),
                ),
                user_agent=IPHONE_UA,
                page_url=CAMPAIGN_URL,
            ),
            timeout=TIMEOUT,
        ).session
        check(created.id != "", "created session has no id")
        check(created.os.name == "iOS", f"os.name = {created.os.name!r}, want iOS")
        check(created.utm.source == "news", f"utm.source = {created.utm.source!r}, want news")
        check(created.metadata.status == "active", f"metadata.status = {created.metadata.status!r}")
        check(created.revision > 0, f"revision = {created.revision}, want > 0")
        print(f"created {created.id} (revision {created.revision}, {created.os.name} {created.app.name})")

        # Masked update: only device.geo.city changes; the os sent along is not in the mask.
        updated = client.UpdateSession(
            session_service_pb2.UpdateSessionRequest(
                session=session_pb2.Session(
                    id=created.id,
                    device=session_pb2.Device(geo=session_pb2.Geo(city="Berlin")),
                    os=session_pb2.Os(name="not-in-the-mask"),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["device.geo.city"]),
                expected_revision=created.revision,
            ),
            timeout=TIMEOUT,
        ).session
        check(updated.device.geo.city == "Berlin", f"device.geo.city = {updated.device.geo.city!r}, want Berlin")
        check(updated.os.name == "iOS", f"os.name = {updated.os.name!r} after the update, want iOS (not in the mask)")
        check(updated.revision > created.revision, f"revision {updated.revision} after the update, want > {created.revision}")
        print(f"updated device.geo.city (revision {updated.revision})")

        # Get.
        got = client.GetSession(session_service_pb2.GetSessionRequest(id=created.id), timeout=TIMEOUT).session
        check(got.device.geo.city == "Berlin", f"get: device.geo.city = {got.device.geo.city!r}")
        check(got.revision == updated.revision, f"get: revision {got.revision}, want {updated.revision}")

        # List by profile.
        listed = client.ListSessions(session_service_pb2.ListSessionsRequest(profile_id=profile), timeout=TIMEOUT)
        check([s.id for s in listed.sessions] == [created.id], f"list by profile: {[s.id for s in listed.sessions]}, want [{created.id}]")
        print(f"got and listed {created.id}")

        # Watch from the create's revision: the update is replayed as CHANGE_KIND_UPDATED.
        stream = client.WatchSessions(
            session_service_pb2.WatchSessionsRequest(
                filter=session_service_pb2.WatchFilter(ids=[created.id]),
                after_revision=created.revision,
            ),
            timeout=TIMEOUT,
        )
        try:
            for message in stream:
                if not message.HasField("change"):
                    continue  # a progress heartbeat
                change = message.change
                kind = session_service_pb2.ChangeKind.Name(change.kind)
                check(change.kind == session_service_pb2.CHANGE_KIND_UPDATED, f"watch: kind {kind}, want CHANGE_KIND_UPDATED")
                check(change.session.id == created.id, f"watch: session {change.session.id!r}, want {created.id!r}")
                check(change.session.device.geo.city == "Berlin", f"watch: device.geo.city = {change.session.device.geo.city!r}")
                check(change.revision == updated.revision, f"watch: revision {change.revision}, want {updated.revision}")
                print(f"watch saw {kind} at revision {change.revision}")
                break
            else:
                check(False, "watch: the stream ended without the update")
        finally:
            stream.cancel()

        # Errors carry google.rpc.ErrorInfo and, for bad input, google.rpc.BadRequest.
        err = expect_error(
            lambda: client.GetSession(session_service_pb2.GetSessionRequest(id="no-such-session"), timeout=TIMEOUT),
            grpc.StatusCode.NOT_FOUND,
        )
        info, _ = error_details(err)
        check(info is not None and info.domain == "session.v1", f"missing session: ErrorInfo {info}, want domain session.v1")
        err = expect_error(
            lambda: client.CreateSession(
                session_service_pb2.CreateSessionRequest(session=session_pb2.Session(id="has space")), timeout=TIMEOUT
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        _, fields = error_details(err)
        check(fields[:1] == ["session.id"], f"invalid id: BadRequest fields {fields}, want ['session.id']")
        print(f"errors: NOT_FOUND ({info.reason}), INVALID_ARGUMENT on {fields}")

    print("python client: all checks passed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Runs the example scenario against a session-service gRPC port.")
    parser.add_argument("target", nargs="?", default="127.0.0.1:50051", help="HOST:PORT of the gRPC port")
    parser.add_argument("--cacert", help="PEM CA certificate that signed the server's certificate: use TLS")
    parser.add_argument("--cert", help="PEM client certificate (mTLS), with --key")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument("--api-key", help="API key secret (default: $SESSION_API_KEY)")
    main(parser.parse_args())
