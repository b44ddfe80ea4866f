// A watcher-client process of `npm run bench:watch` (bench/watch-bench.ts). It holds many
// WatchSessions streams (grpc-js) spread over several channels (one HTTP/2 connection each) and
// does as little as possible per message: the response is not decoded, only scanned for the
// change's revision, and the receipt time is recorded (process.hrtime: CLOCK_MONOTONIC, the
// same clock in every process of the machine, so it compares with the writer's ack times).
//
// Commands, one JSON object per line on stdin; answers `BENCH {...}` lines on stdout:
//   {"cmd":"open","port":P,"channels":C,"watchers":[{"w":0,"profile":"p-0"}, ...]}
//        opens the streams (profile "" = no filter) -> {"type":"opened","streams":N}
//   {"cmd":"report","ackFile":F}
//        F: {"revs":[...],"ack":[ms...],"sent":[ms...],"profile":[index...],"profiles":[...]}
//        written by the bench. For every delivery of a revision in F: latency = receipt - ack
//        (and receipt - the write's start). -> {"type":"report",...}
//   {"cmd":"close"}   cancels every stream, closes the channels, forgets the recordings
//                     -> {"type":"closed"}
//   {"cmd":"cpu"}     -> {"type":"cpu","user":us,"system":us}
// Exits when stdin closes.

import * as fs from "node:fs";
import * as readline from "node:readline";
import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { WatchSessionsRequestSchema } from "../gen/session/v1/session_service_pb";
import { nowMs } from "./lib/processes";
import { send } from "./lib/protocol";

const METHOD = "/session.v1.SessionService/WatchSessions";
const KIND_INITIAL = 1;

// ---------------------------------------------------------------------------------------------
// Minimal protobuf scan of a WatchSessionsResponse: the revision of a `change` (field 1,
// SessionChange: kind = 1, session = 2, revision = 3), or -1 for anything else.

function varint(buf: Buffer, pos: number): [number, number] {
  let result = 0;
  let mul = 1;
  for (;;) {
    const b = buf[pos++];
    result += (b & 0x7f) * mul;
    if (b < 0x80) return [result, pos];
    mul *= 128;
  }
}

function skip(buf: Buffer, pos: number, wireType: number): number {
  switch (wireType) {
    case 0:
      return varint(buf, pos)[1];
    case 1:
      return pos + 8;
    case 2: {
      const [len, p] = varint(buf, pos);
      return p + len;
    }
    case 5:
      return pos + 4;
    default:
      throw new Error(`unexpected wire type ${wireType}`);
  }
}

function changeRevision(buf: Buffer): number {
  let pos = 0;
  while (pos < buf.length) {
    const [tag, p] = varint(buf, pos);
    pos = p;
    if (tag >>> 3 === 1 && (tag & 7) === 2) {
      const [len, start] = varint(buf, pos);
      const end = start + len;
      let kind = 0;
      let revision = -1;
      let q = start;
      while (q < end) {
        const [t, r] = varint(buf, q);
        q = r;
        const field = t >>> 3;
        if (field === 1 && (t & 7) === 0) [kind, q] = varint(buf, q);
        else if (field === 3 && (t & 7) === 0) [revision, q] = varint(buf, q);
        else q = skip(buf, q, t & 7);
      }
      return kind === KIND_INITIAL ? -1 : revision;
    }
    pos = skip(buf, pos, tag & 7);
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Recordings: (watcher, revision, receipt time) in growable typed arrays.

let n = 0;
let recW = new Int32Array(1 << 16);
let recRev = new Float64Array(1 << 16);
let recT = new Float64Array(1 << 16);

function record(w: number, rev: number, t: number): void {
  if (n === recW.length) {
    const grow = <T extends Int32Array | Float64Array>(a: T): T => {
      const b = new (a.constructor as new (len: number) => T)(a.length * 2);
      b.set(a);
      return b;
    };
    recW = grow(recW);
    recRev = grow(recRev);
    recT = grow(recT);
  }
  recW[n] = w;
  recRev[n] = rev;
  recT[n] = t;
  n++;
}

// ---------------------------------------------------------------------------------------------
// Streams

interface Watcher {
  w: number;
  profile: string;
  call: grpc.ClientReadableStream<number>;
}

let channels: grpc.Client[] = [];
let watchers: Watcher[] = [];
let closing = false;
let streamErrors = 0;
let firstError: string | undefined;

function open(port: number, channelCount: number, specs: { w: number; profile: string }[]): void {
  closing = false;
  streamErrors = 0;
  firstError = undefined;
  for (let i = 0; i < channelCount; i++) {
    // A local subchannel pool per client: each channel gets its own HTTP/2 connection.
    channels.push(new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }));
  }
  specs.forEach((spec, i) => {
    const req = toBinary(WatchSessionsRequestSchema, create(WatchSessionsRequestSchema, { filter: { profileId: spec.profile } }));
    const call = channels[i % channelCount].makeServerStreamRequest<Buffer, number>(
      METHOD,
      () => Buffer.from(req),
      changeRevision,
      Buffer.alloc(0),
      new grpc.Metadata(),
      {},
    );
    const w = spec.w;
    call.on("data", (rev: number) => {
      if (rev >= 0) record(w, rev, nowMs());
    });
    call.on("error", (err: grpc.ServiceError) => {
      if (closing && err.code === grpc.status.CANCELLED) return;
      streamErrors++;
      firstError ??= `${err.code} ${err.details}`;
    });
    call.on("end", () => undefined);
    watchers.push({ w, profile: spec.profile, call });
  });
}

function close(): void {
  closing = true;
  for (const wt of watchers) wt.call.cancel();
  for (const c of channels) c.close();
  watchers = [];
  channels = [];
  n = 0;
}

interface AckFile {
  revs: number[];
  ack: number[];
  sent: number[];
  profile: number[];
  profiles: string[];
}

function report(ackFile: string): Record<string, unknown> {
  const a = JSON.parse(fs.readFileSync(ackFile, "utf8")) as AckFile;
  const byRev = new Map<number, number>();
  a.revs.forEach((r, i) => byRev.set(r, i));
  const perProfile = new Map<string, number>();
  for (const p of a.profile) perProfile.set(a.profiles[p], (perProfile.get(a.profiles[p]) ?? 0) + 1);
  const byW = new Map<number, Watcher>(watchers.map((wt) => [wt.w, wt]));
  const last = new Map<number, number>();
  const got = new Map<number, number>();
  const latencies: number[] = [];
  const fromSend: number[] = [];
  let unknown = 0;
  let outOfOrder = 0;
  let wrongFilter = 0;
  for (let k = 0; k < n; k++) {
    const w = recW[k];
    const rev = recRev[k];
    const prev = last.get(w) ?? -1;
    if (rev <= prev) {
      outOfOrder++;
      continue;
    }
    last.set(w, rev);
    const i = byRev.get(rev);
    if (i === undefined) {
      unknown++;
      continue;
    }
    const filter = byW.get(w)?.profile ?? "";
    if (filter !== "" && a.profiles[a.profile[i]] !== filter) {
      wrongFilter++;
      continue;
    }
    got.set(w, (got.get(w) ?? 0) + 1);
    latencies.push(Math.round((recT[k] - a.ack[i]) * 1000) / 1000);
    fromSend.push(Math.round((recT[k] - a.sent[i]) * 1000) / 1000);
  }
  let expected = 0;
  let received = 0;
  for (const wt of watchers) {
    expected += wt.profile === "" ? a.revs.length : (perProfile.get(wt.profile) ?? 0);
    received += got.get(wt.w) ?? 0;
  }
  return {
    type: "report",
    latencies,
    fromSend,
    expected,
    received,
    missing: expected - received,
    unknown,
    outOfOrder,
    wrongFilter,
    streamErrors,
    firstError,
  };
}

readline
  .createInterface({ input: process.stdin })
  .on("line", (line) => {
    if (line.trim() === "") return;
    const msg = JSON.parse(line) as {
      cmd: string;
      port?: number;
      channels?: number;
      watchers?: { w: number; profile: string }[];
      ackFile?: string;
    };
    switch (msg.cmd) {
      case "open":
        open(msg.port!, msg.channels!, msg.watchers!);
        send({ type: "opened", streams: watchers.length });
        break;
      case "report":
        send(report(msg.ackFile!));
        break;
      case "close":
        close();
        send({ type: "closed" });
        break;
      case "cpu": {
        const c = process.cpuUsage();
        send({ type: "cpu", user: c.user, system: c.system });
        break;
      }
    }
  })
  .on("close", () => {
    close();
    process.exit(0);
  });
send({ type: "ready", pid: process.pid });
