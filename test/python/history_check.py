"""A randomized history checker for WatchSessions, written against the contract (docs/watch.md).

An independent client in another language (Python, grpcio, the examples' generated code): it
knows nothing of the service's implementation. Run by test/adversarial/history.test.ts against
two (or more) replicas on one store, or by hand:

    scripts/clients.sh history HOST:PORT,HOST:PORT [--seed N] [--writers 4] [--writes 300] ...

Writers (threads) create, update (traits, profile.id, metadata.channel, metadata.status), touch
and delete their own sessions at random through random replicas, and record every acknowledged
result (revision, kind, the session after it). As each writer only writes its own sessions, the
acknowledged results, ordered by revision, are the store's history of those sessions.

Watchers (threads) with various filters (everything, profile_id, status, channel, ids, and
combinations) connect to random replicas, read a random number of messages or for a random time,
disconnect, and resume with after_revision = the revision of the last change or progress they
received; now and then they re-snapshot with send_initial. One unfiltered watcher never
disconnects (the reference). Everything received is recorded; afterwards it is checked:

  - per connection, change revisions strictly increase; a resume from cursor C that got changes
    or progress up to E received exactly the changes its filter entitles it to in (C, E], with
    the right kinds (CREATED, UPDATED, DELETED, ENTERED_FILTER, LEFT_FILTER) and sessions: no
    gap, no duplicate, nothing extra;
  - an initial state (INITIAL messages and the changes before initial_state_end, applied in
    order) equals the matching sessions at initial_state_end's revision S; no DELETED or
    LEFT_FILTER for a session it never showed; each session at most once;
  - the reference watcher saw exactly the acknowledged writes (a failed write was not applied);
  - at the end GetSession returns the state the history says, and every watcher's view (what
    it built from its messages) equals the sessions matching its filter.

Prints a summary line `HISTORY_SUMMARY {json}`; exits 0 when everything holds, 1 with the
violations on stderr otherwise, 2 when the run itself could not be made.
"""

import argparse
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "python", "gen"))

import grpc  # noqa: E402
from google.protobuf import duration_pb2, field_mask_pb2, json_format  # noqa: E402

from session.v1 import session_pb2, session_service_pb2 as pb, session_service_pb2_grpc  # noqa: E402

KIND = {
    pb.CHANGE_KIND_INITIAL: "INITIAL",
    pb.CHANGE_KIND_CREATED: "CREATED",
    pb.CHANGE_KIND_UPDATED: "UPDATED",
    pb.CHANGE_KIND_DELETED: "DELETED",
    pb.CHANGE_KIND_ENTERED_FILTER: "ENTERED_FILTER",
    pb.CHANGE_KIND_LEFT_FILTER: "LEFT_FILTER",
}
PROFILES = ["pa", "pb", "pc"]
CHANNELS = ["web", "app"]
STATUSES = ["active", "ended"]
CALL_TIMEOUT = 15  # seconds, per unary call
# Codes a watch may end with besides our own cancel; the watcher resumes from its cursor.
RESUMABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}


def snap(s):
    """What the checker compares of a session: the filter fields and the writer's payload."""
    traits = json_format.MessageToDict(s.traits) if s.HasField("traits") else {}
    return (s.profile.id, s.metadata.status, s.metadata.channel, json.dumps(traits, sort_keys=True))


def matches(flt, sn):
    if sn is None:
        return False
    profile, status, channel, _ = sn
    if flt.get("ids") and flt["_id"] not in flt["ids"]:
        return False
    if flt.get("profile_id") and profile != flt["profile_id"]:
        return False
    if flt.get("status") and status != flt["status"]:
        return False
    if flt.get("channel") and channel != flt["channel"]:
        return False
    return True


def match_id(flt, sid, sn):
    return matches(dict(flt, _id=sid), sn)


class Run:
    def __init__(self, args):
        self.args = args
        self.targets = args.targets.split(",")
        self.channels = [grpc.insecure_channel(t) for t in self.targets]
        self.stubs = [session_service_pb2_grpc.SessionServiceStub(c) for c in self.channels]
        self.lock = threading.Lock()
        self.acks = []  # (revision, kind, id, snap after or None, snap before or None)
        self.write_failures = {}  # code name -> count
        self.writers_done = threading.Event()
        self.final_rev = None
        self.violations = []
        self.watcher_errors = {}
        self.resumes = 0
        self.snapshots = 0

    def violation(self, text):
        with self.lock:
            self.violations.append(text)

    # ------------------------------------------------------------------ writers

    def writer(self, w):
        rnd = random.Random(self.args.seed * 1000 + w)
        alive = {}  # id -> (revision, snap) of the acknowledged state
        n = 0
        for i in range(self.args.writes):
            stub = rnd.choice(self.stubs)
            roll = rnd.random()
            try:
                if not alive or (roll < 0.22 and len(alive) < 12):
                    sid = f"h{self.args.seed % 100000}-w{w}-{n}"
                    n += 1
                    req = pb.CreateSessionRequest(request_id=f"rq-{sid}")
                    req.session.id = sid
                    req.session.profile.id = rnd.choice(PROFILES)
                    req.session.metadata.channel = rnd.choice(CHANNELS)
                    req.session.traits.update({"w": w, "i": i})
                    s = stub.CreateSession(req, timeout=CALL_TIMEOUT).session
                    self.ack(s.revision, "created", sid, snap(s), None)
                    alive[sid] = (s.revision, snap(s))
                    continue
                sid = rnd.choice(sorted(alive))
                if roll < 0.70:
                    req = pb.UpdateSessionRequest()
                    req.session.id = sid
                    path = rnd.choice(["traits", "traits", "profile.id", "metadata.channel", "metadata.status"])
                    req.session.traits.update({"w": w, "i": i})
                    req.session.profile.id = rnd.choice(PROFILES)
                    req.session.metadata.channel = rnd.choice(CHANNELS)
                    req.session.metadata.status = rnd.choice(STATUSES)
                    req.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=[path]))
                    s = stub.UpdateSession(req, timeout=CALL_TIMEOUT).session
                    self.updated(alive, sid, s)
                elif roll < 0.85:
                    req = pb.TouchSessionRequest(id=sid, page_url=f"https://shop.example/p{i}")
                    s = stub.TouchSession(req, timeout=CALL_TIMEOUT).session
                    self.updated(alive, sid, s)
                else:
                    r = stub.DeleteSession(pb.DeleteSessionRequest(id=sid), timeout=CALL_TIMEOUT)
                    self.ack(r.revision, "deleted", sid, None, alive.pop(sid)[1])
            except grpc.RpcError as err:
                # Contract: a write that fails is not applied. The reference watcher checks it.
                with self.lock:
                    name = err.code().name
                    self.write_failures[name] = self.write_failures.get(name, 0) + 1

    def updated(self, alive, sid, s):
        # An update that changed nothing may keep the revision (no change, nothing to watch).
        if s.revision != alive[sid][0]:
            self.ack(s.revision, "updated", sid, snap(s), alive[sid][1])
        alive[sid] = (s.revision, snap(s))

    def ack(self, rev, kind, sid, after, before):
        with self.lock:
            self.acks.append((rev, kind, sid, after, before))

    # ------------------------------------------------------------------ watchers

    def watcher(self, k, flt, reference):
        rnd = random.Random(self.args.seed * 1000 + 500 + k)
        conns = []
        cursor = None
        first = True
        while True:
            if self.final_rev is not None and cursor is not None and cursor >= self.final_rev:
                break
            req = pb.WatchSessionsRequest(heartbeat_interval=duration_pb2.Duration(seconds=1))
            req.filter.profile_id = flt.get("profile_id", "")
            req.filter.status = flt.get("status", "")
            req.filter.channel = flt.get("channel", "")
            req.filter.ids.extend(flt.get("ids", []))
            # The first connection: a snapshot or a watch from revision 0 (the reference: always
            # from 0); later ones resume, and now and then re-snapshot.
            if reference:
                snapshot = False
            elif cursor is None:
                snapshot = not first or rnd.random() < 0.5
            else:
                snapshot = rnd.random() < 0.12
            if snapshot:
                req.send_initial = True
            else:
                req.after_revision = cursor if cursor is not None else 0
            first = False
            budget_msgs = 10**9 if reference else rnd.randint(1, 80)
            budget_s = 10**9 if reference else rnd.uniform(0.1, 2.5)
            stub = rnd.choice(self.stubs)
            conn = {"snapshot": snapshot, "after": None if snapshot else (cursor or 0), "msgs": [], "end": None}
            started = time.monotonic()
            call = stub.WatchSessions(req)
            got_end = not snapshot
            try:
                for m in call:
                    which = m.WhichOneof("event")
                    if which == "change":
                        c = m.change
                        conn["msgs"].append(("change", KIND.get(c.kind, str(c.kind)), c.revision, c.session.id, c.session.revision, snap(c.session)))
                        if got_end:
                            cursor = c.revision
                    elif which == "initial_state_end":
                        conn["msgs"].append(("end", m.initial_state_end.revision))
                        got_end = True
                        cursor = m.initial_state_end.revision
                    elif which == "progress":
                        conn["msgs"].append(("progress", m.progress.revision))
                        if got_end and (cursor is None or m.progress.revision > cursor):
                            cursor = m.progress.revision
                    if self.final_rev is not None and got_end and cursor is not None and cursor >= self.final_rev:
                        break
                    if len(conn["msgs"]) >= budget_msgs or time.monotonic() - started > budget_s:
                        break
                call.cancel()
            except grpc.RpcError as err:
                code = err.code()
                if code != grpc.StatusCode.CANCELLED:
                    conn["end"] = code.name
                    with self.lock:
                        self.watcher_errors[code.name] = self.watcher_errors.get(code.name, 0) + 1
                    if code not in RESUMABLE:
                        self.violation(f"watcher {k} {flt}: stream ended with {code.name}: {err.details()}")
                        if code != grpc.StatusCode.OUT_OF_RANGE:
                            conns.append(conn)
                            break
                    if code == grpc.StatusCode.OUT_OF_RANGE:
                        cursor = None  # re-read the state, as the contract says
            conns.append(conn)
            with self.lock:
                self.resumes += 1
                self.snapshots += 1 if snapshot else 0
        return conns

    # ------------------------------------------------------------------ checking

    def check(self, filters, records, final_actual):
        history = sorted(self.acks)
        revs = [h[0] for h in history]
        if len(set(revs)) != len(revs):
            self.violation("two acknowledged writes have the same revision")
        # The reference watcher (never disconnected, unfiltered) against the acknowledged writes.
        ref = [m for c in records[0] for m in c["msgs"] if m[0] == "change"]
        got = [m[2] for m in ref]
        if got != revs:
            extra = sorted(set(got) - set(revs))[:10]
            missing = sorted(set(revs) - set(got))[:10]
            self.violation(f"reference watcher: {len(got)} changes vs {len(revs)} acknowledged writes; not acknowledged but delivered {extra}; acknowledged but not delivered {missing}")

        def state_at(s):
            st = {}
            for rev, kind, sid, after, before in history:
                if rev > s:
                    break
                if kind == "deleted":
                    st.pop(sid, None)
                else:
                    st[sid] = (rev, after)
            return st

        def expected_changes(flt, lo, hi):
            out = []
            for rev, kind, sid, after, before in history:
                if rev <= lo:
                    continue
                if rev > hi:
                    break
                mb, ma = match_id(flt, sid, before), match_id(flt, sid, after)
                if kind == "created":
                    k = "CREATED" if ma else None
                elif kind == "deleted":
                    k = "DELETED" if mb else None
                else:
                    k = "UPDATED" if mb and ma else "ENTERED_FILTER" if ma else "LEFT_FILTER" if mb else None
                if k:
                    out.append((k, rev, sid, before if kind == "deleted" else after))
            return out

        by_rev = {h[0]: h for h in history}
        checked = 0
        for k, (flt, conns) in enumerate(zip(filters, records)):
            who = f"watcher {k} {flt}"
            view = None
            cursor = None
            for ci, conn in enumerate(conns):
                msgs = conn["msgs"]
                i = 0
                if conn["snapshot"]:
                    snapv = {}
                    seam_last = 0
                    end = None
                    while i < len(msgs):
                        m = msgs[i]
                        i += 1
                        if m[0] == "end":
                            end = m[1]
                            break
                        if m[0] != "change":
                            self.violation(f"{who} conn {ci}: {m[0]} before initial_state_end")
                            continue
                        _, kind, rev, sid, srev, sn = m
                        checked += 1
                        if kind == "INITIAL":
                            if sid in snapv:
                                self.violation(f"{who} conn {ci}: INITIAL {sid} twice")
                            snapv[sid] = (srev, sn)
                            continue
                        if rev <= seam_last:
                            self.violation(f"{who} conn {ci}: seam change at {rev} after {seam_last}")
                        seam_last = rev
                        h = by_rev.get(rev)
                        exp = [e for e in expected_changes(flt, rev - 1, rev)]
                        if h is None or not exp or exp[0][0] != kind or exp[0][2] != sid or exp[0][3] != sn:
                            self.violation(f"{who} conn {ci}: seam change {kind} {sid} at {rev}, history says {exp[:1]}")
                        if kind in ("DELETED", "LEFT_FILTER"):
                            if sid not in snapv:
                                self.violation(f"{who} conn {ci}: {kind} {sid} at {rev} for a session the initial state never showed")
                            snapv.pop(sid, None)
                        else:
                            snapv[sid] = (rev, sn)
                    if end is None:
                        continue  # disconnected mid-snapshot: a client discards it
                    want = {sid: v for sid, v in state_at(end).items() if match_id(flt, sid, v[1])}
                    if snapv != want:
                        missing = sorted(set(want.items()) - set(snapv.items()))[:3]
                        extra = sorted(set(snapv.items()) - set(want.items()))[:3]
                        self.violation(
                            f"{who} conn {ci}: initial state at S={end} has {len(snapv)} sessions, the history {len(want)}; "
                            f"missing or other version {missing}; not in the state at S {extra}"
                        )
                    view = dict(snapv)
                    cursor = end
                else:
                    if cursor is not None and conn["after"] != cursor:
                        self.violation(f"{who} conn {ci}: resumed after {conn['after']}, cursor was {cursor}")
                    if view is None:
                        view = {}  # a watch from revision 0 builds the whole state
                    cursor = conn["after"]
                live = [m for m in msgs[i:] if m[0] == "change"]
                progress = [m[1] for m in msgs[i:] if m[0] == "progress"]
                last = cursor
                for m in live:
                    if m[2] <= last:
                        self.violation(f"{who} conn {ci}: change {m[2]} after {last} (order/duplicate)")
                    last = max(last, m[2])
                top = max([last] + progress)
                for p in progress:
                    if p < cursor:
                        self.violation(f"{who} conn {ci}: progress {p} below the cursor {cursor}")
                want = expected_changes(flt, cursor, top)
                got = [(m[1], m[2], m[3], m[5]) for m in live]
                checked += len(got)
                if got != want:
                    gs, ws = set(got), set(want)
                    self.violation(
                        f"{who} conn {ci}: after {cursor} up to {top}: got {len(got)} changes, entitled to {len(want)}; "
                        f"missing {sorted(ws - gs)[:3]}; not entitled {sorted(gs - ws)[:3]}"
                    )
                for m in live:
                    if m[1] != "DELETED" and m[4] != m[2]:
                        self.violation(f"{who} conn {ci}: {m[1]} {m[3]} at {m[2]} carries session.revision {m[4]}")
                    if m[1] in ("DELETED", "LEFT_FILTER"):
                        view.pop(m[3], None)
                    else:
                        view[m[3]] = (m[2], m[5])
                cursor = top
            # The final view against GetSession.
            want = {sid: v for sid, v in final_actual.items() if v is not None and match_id(flt, sid, v[1])}
            if view != want:
                view = view or {}
                missing = sorted(set(want.items()) - set(view.items()))[:3]
                extra = sorted(set(view.items()) - set(want.items()))[:3]
                self.violation(f"{who}: final view has {len(view)} sessions, GetSession {len(want)}; missing or other version {missing}; not there {extra}")
        return checked


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("targets", help="gRPC HOST:PORT of each replica, comma-separated")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 1000000)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--writes", type=int, default=300, help="calls per writer")
    ap.add_argument("--watchers", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=120, help="give up after this many seconds")
    args = ap.parse_args()
    run = Run(args)
    for ch in run.channels:
        grpc.channel_ready_future(ch).result(timeout=10)

    rnd = random.Random(args.seed)
    writer_ids = [f"h{args.seed % 100000}-w{w}-{n}" for w in range(args.writers) for n in range(4)]
    catalogue = [
        {},
        {"profile_id": "pa"},
        {"profile_id": "pb", "status": "active"},
        {"channel": "web"},
        {"status": "active"},
        {"ids": sorted(rnd.sample(writer_ids, min(5, len(writer_ids))))},
        {"profile_id": "pc", "channel": "app"},
        {"status": "ended"},
        {"ids": sorted(rnd.sample(writer_ids, min(3, len(writer_ids)))), "status": "active"},
    ]
    filters = [{}] + [catalogue[k % len(catalogue)] for k in range(args.watchers - 1)]
    records = [None] * len(filters)

    def watch(k):
        try:
            records[k] = run.watcher(k, filters[k], k == 0)
        except Exception as err:  # noqa: BLE001 - any crash is a finding to report
            run.violation(f"watcher {k} crashed: {err!r}")
            records[k] = []

    t0 = time.monotonic()
    watchers = [threading.Thread(target=watch, args=(k,), daemon=True) for k in range(len(filters))]
    for t in watchers:
        t.start()
    time.sleep(0.3)  # let the reference watcher and the from-0 watchers open before the first write
    writers = [threading.Thread(target=run.writer, args=(w,), daemon=True) for w in range(args.writers)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(timeout=args.timeout)
    write_s = time.monotonic() - t0
    with run.lock:
        run.final_rev = max((a[0] for a in run.acks), default=0)
    deadline = t0 + args.timeout
    for t in watchers:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    if any(t.is_alive() for t in watchers + writers):
        print(f"history_check: not finished within {args.timeout} s (seed {args.seed})", file=sys.stderr)
        sys.exit(2)

    # The final state, from GetSession, of every session ever created.
    final_actual = {}
    for rev, kind, sid, after, before in sorted(run.acks):
        if sid in final_actual:
            continue
        try:
            s = run.stubs[0].GetSession(pb.GetSessionRequest(id=sid), timeout=CALL_TIMEOUT).session
            final_actual[sid] = (s.revision, snap(s))
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                run.violation(f"GetSession {sid}: {err.code().name}")
            final_actual[sid] = None
    expected_final = {}
    for rev, kind, sid, after, before in sorted(run.acks):
        expected_final[sid] = None if kind == "deleted" else (rev, after)
    for sid, v in expected_final.items():
        if final_actual.get(sid) != v:
            run.violation(f"GetSession {sid}: {final_actual.get(sid)}, the acknowledged history says {v}")
    checked = run.check(filters, records, final_actual)
    received = sum(len(c["msgs"]) for r in records for c in r)
    summary = {
        "seed": args.seed,
        "replicas": len(run.targets),
        "writers": args.writers,
        "acknowledged_writes": len(run.acks),
        "failed_writes": run.write_failures,
        "watchers": len(filters),
        "connections": run.resumes,
        "snapshots": run.snapshots,
        "messages_received": received,
        "changes_checked": checked,
        "watch_errors": run.watcher_errors,
        "violations": len(run.violations),
        "write_seconds": round(write_s, 1),
        "total_seconds": round(time.monotonic() - t0, 1),
    }
    print("HISTORY_SUMMARY " + json.dumps(summary), flush=True)
    for v in run.violations[:40]:
        print("VIOLATION " + v, file=sys.stderr)
    sys.exit(1 if run.violations else 0)


if __name__ == "__main__":
    main()
