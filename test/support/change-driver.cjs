// A load of RATE × SECONDS session changes paced at RATE a second, in a process of its own so
// that the test process that drives the browser stays free:
// `node change-driver.cjs GRPC_PORT RATE SECONDS CHANNEL`.
// Over gRPC (grpc-js, one HTTP/2 connection, the service's generated code from the build in
// dist/): every 10 ms it issues the calls due by then, a quarter CreateSession (channel CHANNEL)
// and three quarters TouchSession with a page URL (a page view) of a session it created. At most
// MAX_IN_FLIGHT calls are outstanding: on a machine too busy to keep the pace, calls wait for a
// place and the load takes longer (the rate reached says so), up to GIVE_UP_S more seconds, after
// which what is left is not sent (counted as unsent). Each call has a deadline. Prints one JSON
// line at the end: counts, the rate reached and the highest revision the service answered with.
/* global setTimeout -- a Node global the lint config does not declare */
"use strict";

const { join } = require("node:path");
const grpc = require("@grpc/grpc-js");
const { create } = require("@bufbuild/protobuf");
const dist = join(__dirname, "..", "..", "dist");
const { SessionService } = require(join(dist, "gen", "session", "v1", "session_service_pb.js"));
const { grpcDefinitions } = require(join(dist, "src", "rpc", "grpc-codec.js"));

const [portArg, rateArg, secondsArg, channel] = process.argv.slice(2);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
if (!(Number(portArg) > 0) || !(rate > 0) || !(seconds > 0) || !channel) {
  console.error("usage: change-driver.cjs GRPC_PORT RATE SECONDS CHANNEL");
  process.exit(2);
}
const MAX_IN_FLIGHT = 256;
const CALL_TIMEOUT_MS = 5000;
const TICK_MS = 10;
const GIVE_UP_S = 30;

const result = { created: 0, touched: 0, errors: 0, unsent: 0, firstError: undefined, maxRevision: 0, seconds: 0, rate: 0 };
const ids = [];
let inFlight = 0;
let issued = 0;

const definitions = grpcDefinitions(SessionService);
const Client = grpc.makeGenericClientConstructor(definitions, "SessionService");
const client = new Client(`127.0.0.1:${portArg}`, grpc.credentials.createInsecure());

/** One unary call of `method` (its local name) with a plain request object. */
function call(method, body) {
  const input = SessionService.methods.find((m) => m.localName === method).input;
  return new Promise((resolve, reject) =>
    client[method](create(input, body), { deadline: Date.now() + CALL_TIMEOUT_MS }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

async function one(n) {
  inFlight++;
  try {
    // Creates first, until there is a session to touch; then one create in four.
    const touch = ids.length > 0 && n % 4 !== 0;
    const body = touch
      ? { id: ids[n % ids.length], pageUrl: `https://shop.example/p/${n}` }
      : { session: { profile: { id: `load-p-${n % 50}` }, metadata: { channel } }, pageUrl: "https://shop.example/?utm_source=load" };
    const out = await call(touch ? "touchSession" : "createSession", body);
    if (touch) result.touched++;
    else {
      result.created++;
      ids.push(out.session.id);
    }
    result.maxRevision = Math.max(result.maxRevision, Number(out.session.revision));
  } catch (err) {
    result.errors++;
    result.firstError ??= String(err && err.message ? err.message : err);
  } finally {
    inFlight--;
  }
}

const total = Math.round(rate * seconds);
const start = Date.now();
const giveUp = start + (seconds + GIVE_UP_S) * 1000;
const pending = new Set();

function tick() {
  const now = Date.now();
  const due = Math.min(total, Math.floor(((now - start) * rate) / 1000));
  while (issued < due && inFlight < MAX_IN_FLIGHT) {
    const p = one(issued++);
    pending.add(p);
    p.finally(() => pending.delete(p));
  }
  if (issued < total && now < giveUp) setTimeout(tick, TICK_MS);
  else
    Promise.all(pending).then(() => {
      result.unsent = total - issued;
      result.seconds = (Date.now() - start) / 1000;
      result.rate = Math.round((result.created + result.touched) / result.seconds);
      client.close();
      console.log(JSON.stringify(result));
    });
}
tick();
