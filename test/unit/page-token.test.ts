import { InvalidArgumentError } from "../../src/domain/errors";
import { decodePageToken, encodePageToken } from "../../src/domain/page-token";
import type { ListInput } from "../../src/domain/sessions";

const FILTERS: ListInput = {
  profileId: "p-1",
  status: "active",
  channel: "web",
  insertFrom: new Date("2024-05-01T00:00:00Z"),
  insertTo: new Date("2024-06-01T00:00:00Z"),
  pageSize: 10,
  pageToken: "",
};
const CURSOR = { insert: new Date("2024-05-30T07:44:23.243Z"), id: "0b4f7c6e-3c1a-4f43-9e0e-6a4a8f6f2f11" };

function pageTokenError(token: string, input: ListInput): InvalidArgumentError {
  try {
    decodePageToken(token, input);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return err as InvalidArgumentError;
  }
  throw new Error(`decodePageToken(${JSON.stringify(token)}) did not throw`);
}

const b64 = (s: string) => Buffer.from(s).toString("base64url");

describe("page tokens", () => {
  it("round-trip the cursor with the same filters", () => {
    const token = encodePageToken(CURSOR, FILTERS);
    expect(typeof token).toBe("string");
    expect(token).not.toBe("");
    const cursor = decodePageToken(token, FILTERS);
    expect(cursor.id).toBe(CURSOR.id);
    expect(cursor.insert.getTime()).toBe(CURSOR.insert.getTime());
  });

  it("round-trip with no filters at all, and with odd ids", () => {
    const none: ListInput = { profileId: "", status: "", channel: "", pageSize: 0, pageToken: "" };
    for (const id of ["", "a", "zażółć 🙂", '"quoted"', "x".repeat(128)]) {
      const cursor = decodePageToken(encodePageToken({ insert: new Date(0), id }, none), none);
      expect(cursor).toEqual({ insert: new Date(0), id });
    }
  });

  it("are bound to the channel group, and tokens made without one stay valid", () => {
    const grouped: ListInput = { ...FILTERS, channelGroup: "Paid Social" };
    const token = encodePageToken(CURSOR, grouped);
    expect(decodePageToken(token, grouped).id).toBe(CURSOR.id);
    expect(pageTokenError(token, { ...grouped, channelGroup: "Email" }).violations[0].field).toBe("page_token");
    expect(pageTokenError(token, FILTERS).violations[0].field).toBe("page_token");
    // "" is no filter: the same fingerprint as a token made before channel groups existed.
    expect(decodePageToken(encodePageToken(CURSOR, FILTERS), { ...FILTERS, channelGroup: "" }).id).toBe(CURSOR.id);
  });

  it("are URL-safe", () => {
    expect(encodePageToken({ insert: CURSOR.insert, id: "?&/+=" }, FILTERS)).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it("do not depend on page size or the token passed in", () => {
    const token = encodePageToken(CURSOR, FILTERS);
    const nextCall: ListInput = { ...FILTERS, pageSize: 500, pageToken: token };
    expect(decodePageToken(token, nextCall).id).toBe(CURSOR.id);
  });

  it.each<[string, Partial<ListInput>]>([
    ["another profile", { profileId: "p-2" }],
    ["another status", { status: "closed" }],
    ["another channel", { channel: "mobile" }],
    ["no profile filter", { profileId: "" }],
    ["another insert_from", { insertFrom: new Date("2024-05-01T00:00:00.001Z") }],
    ["no insert_from", { insertFrom: undefined }],
    ["another insert_to", { insertTo: new Date("2024-07-01T00:00:00Z") }],
    ["no insert_to", { insertTo: undefined }],
    ["swapped values between filters", { status: "web", channel: "active" }],
    ["a channel group", { channelGroup: "Organic Search" }],
  ])("are refused with %s (field page_token)", (_name, change) => {
    const token = encodePageToken(CURSOR, FILTERS);
    const err = pageTokenError(token, { ...FILTERS, ...change });
    expect(err.violations).toEqual([{ field: "page_token", description: expect.any(String) }]);
  });

  it.each([
    ["garbage", "not a token!"],
    ["base64 of non-JSON", b64("hello")],
    ["base64 of JSON null", b64("null")],
    ["base64 of a number", b64("42")],
    ["base64 of an array", b64("[1,2,3]")],
    ["a token missing fields", b64('{"t":1}')],
    ["a token with a string time", b64('{"t":"1","i":"x","f":"y"}')],
    ["a token with a non-string id", b64('{"t":1,"i":2,"f":"y"}')],
    ["a truncated token", "x"],
  ])("refuse %s (field page_token)", (_name, token) => {
    const err = pageTokenError(token, FILTERS);
    expect(err.violations).toEqual([{ field: "page_token", description: expect.any(String) }]);
  });

  it("refuse a truncated or altered real token", () => {
    const token = encodePageToken(CURSOR, FILTERS);
    expect(pageTokenError(token.slice(0, token.length - 5), FILTERS).violations[0].field).toBe("page_token");
    const json = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { f: string };
    json.f = "AAAAAAAAAAAA";
    expect(pageTokenError(b64(JSON.stringify(json)), FILTERS).violations[0].field).toBe("page_token");
  });

  it("refuse a token whose time is not a valid date, instead of returning an Invalid Date cursor", () => {
    const token = encodePageToken(CURSOR, FILTERS);
    const json = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { t: number };
    json.t = 1e20; // finite, but beyond the range of Date
    const forged = b64(JSON.stringify(json));
    const err = pageTokenError(forged, FILTERS);
    expect(err.violations[0].field).toBe("page_token");
  });
});
