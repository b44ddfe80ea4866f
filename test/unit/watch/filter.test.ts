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
});
