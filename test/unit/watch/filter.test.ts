// classifyChange: what a change means to a filter (created, updated, entered, left, deleted),
// including log entries whose before-state is unknown.

import { classifyChange } from "../../../src/domain/watch/filter";
import { filter, MemoryLog } from "./memory-log";

describe("classifyChange", () => {
  const log = new MemoryLog();
  const a = { profileId: "a", status: "active", channel: "web" };
  const b = { profileId: "b", status: "active", channel: "web" };
  it("tells created, updated, entered, left and deleted apart by the before-state", () => {
    const f = filter({ profileId: "a" });
    expect(classifyChange(f, log.write("created", "s1", a))).toBe("created");
    expect(classifyChange(f, log.write("updated", "s1", a))).toBe("updated");
    expect(classifyChange(f, log.write("updated", "s1", b))).toBe("left");
    expect(classifyChange(f, log.write("updated", "s1", b))).toBeNull();
    expect(classifyChange(f, log.write("updated", "s1", a))).toBe("entered");
    expect(classifyChange(f, log.write("deleted", "s1"))).toBe("deleted");
    expect(classifyChange(f, log.write("created", "s2", b))).toBeNull();
    expect(classifyChange(f, log.write("deleted", "s2"))).toBeNull();
  });
  it("treats an unknown before-state as matching, for any filter", () => {
    log.write("created", "s3", b);
    const repaired = log.write("updated", "s3", b, true);
    expect(classifyChange(filter({ profileId: "a" }), repaired)).toBe("left");
    expect(classifyChange(filter({ ids: ["other"] }), repaired)).toBe("left");
    expect(classifyChange(filter({ profileId: "b" }), repaired)).toBe("updated");
  });
  it("matches ids, status and channel", () => {
    const c = log.write("created", "s4", { profileId: "a", status: "ended", channel: "app" });
    expect(classifyChange(filter({ ids: ["x", "s4"] }), c)).toBe("created");
    expect(classifyChange(filter({ ids: ["x"] }), c)).toBeNull();
    expect(classifyChange(filter({ status: "ended", channel: "app" }), c)).toBe("created");
    expect(classifyChange(filter({ status: "active" }), c)).toBeNull();
  });
  it("matches the channel group, before and after the change; a session without traffic matches no group", () => {
    const search = { profileId: "a", status: "active", channel: "web", channelGroup: "Organic Search" };
    const paid = { ...search, channelGroup: "Paid Search" };
    const none = { profileId: "a", status: "active", channel: "web" };
    const f = filter({ channelGroup: "Organic Search" });
    expect(classifyChange(f, log.write("created", "s5", search))).toBe("created");
    expect(classifyChange(f, log.write("updated", "s5", search))).toBe("updated");
    // The group never changes after create; the rule is still the before/after one.
    expect(classifyChange(f, log.write("updated", "s5", paid))).toBe("left");
    expect(classifyChange(f, log.write("updated", "s5", search))).toBe("entered");
    expect(classifyChange(f, log.write("deleted", "s5"))).toBe("deleted");
    expect(classifyChange(f, log.write("created", "s6", none))).toBeNull();
    expect(classifyChange(filter({}), log.write("updated", "s6", none))).toBe("updated");
    expect(classifyChange(f, log.write("deleted", "s6"))).toBeNull();
    expect(classifyChange(filter({ channelGroup: "Paid Search", channel: "web" }), log.write("created", "s7", paid))).toBe("created");
    expect(classifyChange(filter({ channelGroup: "Paid Search", channel: "app" }), log.write("updated", "s7", paid))).toBeNull();
  });
});
