// `npm run bench:mongo -- --backend postgresql` (bench/mongo-bench.ts): the private PostgreSQL
// under FerretDB, reached with psql: the table FerretDB made for `sessions`, the GIN index on the
// expression FerretDB filters `profile.id` with, the plan PostgreSQL picks, and a bulk load in SQL.

import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { onCleanup, REPO } from "./lib/processes";

const POSTGRES = path.join(REPO, "scripts", "postgres.sh");
const GIN = `USING gin ((_jsonb #> '{profile,id}') jsonb_path_ops)`;

export class BenchPostgres {
  /** The PostgreSQL table FerretDB made for `sessions` (after findTable). */
  table = "";

  private constructor(readonly url: string) {}

  /** Starts PostgreSQL in `tmpDir`/postgres (scripts/postgres.sh), stopped at cleanup. */
  static start(tmpDir: string): BenchPostgres {
    // PostgreSQL runs as the `postgres` user when we are root: it must be able to reach its directory.
    fs.chmodSync(tmpDir, 0o711);
    const dir = path.join(tmpDir, "postgres");
    onCleanup(() => void spawnSync("bash", [POSTGRES, "stop", dir], { stdio: "inherit" }));
    const pg = spawnSync("bash", [POSTGRES, "start", dir], { encoding: "utf8" });
    if (pg.status !== 0) throw new Error(`scripts/postgres.sh start failed: ${pg.stderr}`);
    return new BenchPostgres(pg.stdout.trim());
  }

  /** FerretDB's environment for this PostgreSQL. */
  ferretEnv(): NodeJS.ProcessEnv {
    return {
      FERRETDB_HANDLER: "postgresql",
      FERRETDB_POSTGRESQL_URL: this.url,
      // FerretDB's own variables: push `profile.id` (dot notation) down to PostgreSQL, and insert
      // an insertMany of 1000 as one INSERT statement instead of ten.
      FERRETDB_TEST_ENABLE_NESTED_PUSHDOWN: "true",
      FERRETDB_TEST_BATCH_SIZE: "1000",
    };
  }

  /** Runs SQL (psql over loopback TCP); returns its unaligned output. */
  sql(sql: string): string {
    const r = spawnSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-d", this.url, "-c", sql], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`psql failed: ${r.stderr || r.error?.message}`);
    return r.stdout.trim();
  }

  /** Finds the sessions table; returns its index definitions, one a line. */
  findTable(): string {
    this.table = this.sql(`SELECT _jsonb->>'table' FROM bench._ferretdb_database_metadata WHERE _jsonb->>'_id' = 'sessions'`);
    return this.sql(`SELECT indexdef FROM pg_indexes WHERE schemaname = 'bench' AND tablename = '${this.table}'`);
  }

  /** Adds the GIN index; returns its definition. */
  addGin(): string {
    const def = `CREATE INDEX IF NOT EXISTS bench_profile_gin ON bench."${this.table}" ${GIN}`;
    this.sql(def);
    return def;
  }

  dropGin(): void {
    this.sql(`DROP INDEX bench.bench_profile_gin`);
  }

  vacuum(): void {
    this.sql(`VACUUM (ANALYZE) bench."${this.table}"`);
  }

  /** The row count and PostgreSQL's plan of FerretDB's ListSessions query for `profile`. */
  plan(profile: string): { rows: string; plan: string } {
    const rows = this.sql(`SELECT count(*) FROM bench."${this.table}"`);
    const plan = this.sql(
      `EXPLAIN (ANALYZE, COSTS OFF, TIMING ON) SELECT _jsonb FROM bench."${this.table}" WHERE _jsonb #> '{profile,id}' @> '"${profile}"'`,
    );
    return { rows, plan };
  }

  /**
   * Inserts `n` copies of the row FerretDB stored for the document `sampleId`, with the fields
   * the bench's filler documents vary set the same way for filler numbers from..from+n-1: new _id
   * (a UUID), profile "filler-profile-<k/10>", insert time (a BSON date is stored as
   * milliseconds, `t0` + (k * 7919 mod one year) s) and its timestamp and weekday. The type
   * schema ($s) of the copied row stays valid: only values of the same types change. Returns the
   * number of rows inserted.
   */
  copyRows(sampleId: unknown, from: number, n: number, t0: number): number {
    const ms = `(${t0}::bigint + ((g::bigint * 7919) % 31536000) * 1000)`;
    const inserted = this.sql(
      `WITH t AS (SELECT _jsonb FROM bench."${this.table}" WHERE _jsonb->'_id' = '${JSON.stringify(sampleId)}'::jsonb),
       ins AS (INSERT INTO bench."${this.table}" (_jsonb)
       SELECT jsonb_set(jsonb_set(jsonb_set(jsonb_set(jsonb_set(t._jsonb,
                '{_id}', to_jsonb(gen_random_uuid()::text)),
                '{profile,id}', to_jsonb('filler-profile-' || (g / 10))),
                '{metadata,time,insert}', to_jsonb(${ms})),
                '{metadata,time,timestamp}', to_jsonb(${ms} / 1000)),
                '{metadata,time,weekday}', to_jsonb(extract(dow FROM to_timestamp(${ms} / 1000.0) AT TIME ZONE 'UTC')::int))
       FROM t, generate_series(${from}::bigint, ${from + n - 1}::bigint) AS g
       RETURNING 1)
       SELECT count(*) FROM ins`.replace(/\s+/g, " "),
    );
    return Number(inserted);
  }
}
