import { SessionService } from "../../gen/session/v1/session_service_pb";
import { checkHandlers, grpcService, type Handler } from "../../src/rpc/grpc-server";
import type { SessionHandlers } from "../../src/rpc/handlers";
import { createLogger } from "../../src/log";

const unary: Handler = async () => ({});
const all = (): Record<string, Handler> => Object.fromEntries(SessionService.methods.map((m) => [m.localName, unary]));

describe("handler registration", () => {
  it("accepts one handler per method of the service", () => {
    expect(() => checkHandlers(SessionService, all())).not.toThrow();
    const { definition, implementation } = grpcService(SessionService, all(), createLogger("silent"));
    expect(Object.keys(definition).sort()).toEqual(SessionService.methods.map((m) => m.localName).sort());
    expect(Object.keys(implementation).sort()).toEqual(Object.keys(definition).sort());
  });

  it("fails loudly on a missing method instead of leaving it unserved", () => {
    const handlers = all();
    delete handlers.touchSession;
    expect(() => checkHandlers(SessionService, handlers)).toThrow('session.v1.SessionService: TouchSession has no handler "touchSession"');
    expect(() => grpcService(SessionService, handlers, createLogger("silent"))).toThrow("TouchSession has no handler");
  });

  it("fails loudly on a handler that names no method (a misspelling)", () => {
    const handlers = all();
    delete handlers.getSessionStats;
    handlers.getSessionStat = unary;
    expect(() => checkHandlers(SessionService, handlers)).toThrow(
      'session.v1.SessionService: GetSessionStats has no handler "getSessionStats"; handler "getSessionStat" is no method of the service',
    );
  });

  it("types the handler object against the contract", () => {
    const { touchSession: _omitted, ...partial } = {} as SessionHandlers;
    // @ts-expect-error a handler object without touchSession does not compile
    const missing: SessionHandlers = partial;
    // @ts-expect-error nor one with a method the contract does not have (a misspelling)
    const extra: SessionHandlers = { ...partial, touchSession: _omitted, touchSesion: _omitted };
    expect([missing, extra]).toHaveLength(2);
  });
});
