import { anonymizeIp, checkIp, formatIp, isLocalIp, maskIp, parseIp, type IpAnonymization } from "../../src/domain/ip";

const canonical = (text: string): string | undefined => {
  const ip = parseIp(text);
  return ip && formatIp(ip);
};

describe("parseIp and formatIp", () => {
  it.each([
    ["192.0.2.1", "192.0.2.1", 4],
    [" 8.8.8.8\t", "8.8.8.8", 4],
    ["0.0.0.0", "0.0.0.0", 4],
    ["255.255.255.255", "255.255.255.255", 4],
    ["2001:DB8::1", "2001:db8::1", 6],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1", 6],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1", 6], // the first of two equal zero runs
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1", 6], // one zero group is not shortened
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1", 6], // the longest run
    ["::", "::", 6],
    ["::1", "::1", 6],
    ["1::", "1::", 6],
    ["fe80::1:2", "fe80::1:2", 6],
    ["64:ff9b::192.0.2.33", "64:ff9b::c000:221", 6], // an embedded IPv4 tail that is not a mapping
    // IPv4-mapped IPv6 (a dual-stack socket's view of an IPv4 client) is the IPv4 address.
    ["::ffff:192.0.2.1", "192.0.2.1", 4],
    ["::FFFF:c000:0201", "192.0.2.1", 4],
    ["0:0:0:0:0:ffff:8.8.8.8", "8.8.8.8", 4],
  ])("reads %j as %j (IPv%d)", (text, expected, version) => {
    const ip = parseIp(text);
    expect(ip?.version).toBe(version);
    expect(canonical(text)).toBe(expected);
    // The canonical form reads back as the same address.
    expect(canonical(expected)).toBe(expected);
  });

  it.each([
    "",
    " ",
    "localhost",
    "1.2.3",
    "1.2.3.4.5",
    "256.1.1.1",
    "01.2.3.4", // a leading zero: octal to some parsers
    "1.2.3.4:80",
    "1.2.3.-4",
    "1.2.3.4/24",
    "[::1]",
    "[::1]:443",
    "fe80::1%eth0",
    "2001:db8::1::2",
    "2001:db8:::1",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7::8",
    "12345::1",
    "g::1",
    "::1.2.3.4.5",
    "::ffff:1.2.3.256",
    "1.2.3.4::",
    "２.０.０.１", // full-width digits
    "1".repeat(65),
  ])("refuses %j", (text) => {
    expect(parseIp(text)).toBeUndefined();
  });

  it("refuses what is not a string", () => {
    expect(parseIp(undefined as unknown as string)).toBeUndefined();
  });
});

describe("anonymizeIp", () => {
  const cases: [string, IpAnonymization, string | null][] = [
    ["192.0.2.123", "off", "192.0.2.123"],
    ["192.0.2.123", "truncate", "192.0.2.0"],
    ["192.0.2.123", "drop", null],
    ["::ffff:203.0.113.77", "truncate", "203.0.113.0"],
    ["2001:db8:abcd:12:1:2:3:4", "off", "2001:db8:abcd:12:1:2:3:4"],
    ["2001:db8:abcd:12:1:2:3:4", "truncate", "2001:db8:abcd::"],
    ["2001:DB8:ABCD:FFFF::1", "truncate", "2001:db8:abcd::"],
    ["2001:db8:abcd:12:1:2:3:4", "drop", null],
    ["::1", "truncate", "::"],
  ];
  it.each(cases)("%j under %s is %j", (text, mode, expected) => {
    expect(anonymizeIp(parseIp(text)!, mode)).toBe(expected);
  });

  it("masks to any prefix, bit by bit", () => {
    const ip = parseIp("255.255.255.255")!;
    expect(formatIp(maskIp(ip, 0))).toBe("0.0.0.0");
    expect(formatIp(maskIp(ip, 20))).toBe("255.255.240.0");
    expect(formatIp(maskIp(ip, 32))).toBe("255.255.255.255");
    expect(formatIp(maskIp(parseIp("ffff:ffff:ffff:ffff::")!, 52))).toBe("ffff:ffff:ffff:f000::");
    // The original is not changed.
    expect(formatIp(ip)).toBe("255.255.255.255");
  });
});

describe("checkIp", () => {
  it("accepts an address or nothing", () => {
    expect(checkIp("client_ip", "")).toEqual([]);
    expect(checkIp("client_ip", null)).toEqual([]);
    expect(checkIp("client_ip", "2001:db8::1")).toEqual([]);
  });

  it("names the field, and never repeats the value (it may be a visitor's full address)", () => {
    for (const value of ["203.0.113.77:8080", "[2001:db8::77]", "x".repeat(100)]) {
      const [violation, ...more] = checkIp("client_ip", value);
      expect(more).toEqual([]);
      expect(violation!.field).toBe("client_ip");
      expect(violation!.description).toMatch(/^must be an IPv4 or IPv6 address/);
      expect(violation!.description).not.toContain("203.0.113.77");
      expect(violation!.description).not.toContain("2001:db8::77");
      expect(violation!.description).not.toContain("xxx");
    }
  });
});

describe("isLocalIp", () => {
  it.each([
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",
    "100.127.255.255",
    "127.0.0.1",
    "169.254.1.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "224.0.0.1",
    "255.255.255.255",
    "::ffff:10.1.1.1",
    "::",
    "::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "febf::1",
    "ff02::1",
  ])("%s has no place", (text) => {
    expect(isLocalIp(parseIp(text)!)).toBe(true);
  });

  it.each([
    "8.8.8.8",
    "100.128.0.1",
    "172.32.0.1",
    "192.0.2.1",
    "223.255.255.255",
    "2001:db8::1",
    "2001:4860:4860::8888",
    "fec0::1",
    "::2",
  ])("%s may have one", (text) => {
    expect(isLocalIp(parseIp(text)!)).toBe(false);
  });
});
