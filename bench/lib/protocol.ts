// The line protocol between a bench and its child processes: a child prints `BENCH {json}`
// lines on stdout (anything else on stdout is a log line) and reads commands on stdin.

export const PREFIX = "BENCH ";

/** Prints one protocol message on stdout. */
export function send(msg: Record<string, unknown>): void {
  process.stdout.write(`${PREFIX}${JSON.stringify(msg)}\n`);
}

/** The message of a protocol line, or undefined for a log line. */
export function parseLine(line: string): Record<string, unknown> | undefined {
  return line.startsWith(PREFIX) ? (JSON.parse(line.slice(PREFIX.length)) as Record<string, unknown>) : undefined;
}
