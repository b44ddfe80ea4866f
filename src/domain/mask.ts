// Field masks for UpdateSession: which paths a client may name, what "*" means, and how the
// masked paths of an update become a store patch.
//
// Paths use the document's snake_case names ("device.geo.city"). Paths into the free-form
// objects (context, properties, traits, aux, metadata.aux, profile.metadata) may go on into
// their keys ("properties.cart.value"). Server-set fields cannot be named.

import { isDate } from "node:util/types";
import { InvalidArgumentError, type FieldViolation } from "./errors";
import type { SessionPatch } from "../store/port";
import type { SessionDoc } from "./session";
import { badKeyReason } from "./validate";

type Node =
  | { kind: "leaf"; writable: boolean }
  | { kind: "free" }
  | { kind: "object"; children: Record<string, Node> };

const rw: Node = { kind: "leaf", writable: true };
const ro: Node = { kind: "leaf", writable: false };
const free: Node = { kind: "free" };
const object = (children: Record<string, Node>): Node => ({ kind: "object", children });
const leaves = (...names: string[]): Record<string, Node> => Object.fromEntries(names.map((n) => [n, rw]));

/** The document's shape as far as masks are concerned. */
const SCHEMA = object({
  id: ro,
  revision: ro,
  operation: ro,
  metadata: object({
    time: object({ insert: ro, create: rw, update: ro, timestamp: ro, duration: ro, weekday: ro }),
    channel: rw,
    aux: free,
    status: rw,
  }),
  profile: object({ id: rw, primary_id: rw, metadata: free }),
  device: object({
    ...leaves("name", "brand", "model", "type", "touch", "ip", "resolution", "color_depth", "orientation"),
    geo: object({
      country: object(leaves("name", "code")),
      ...leaves("city", "county", "postal", "latitude", "longitude", "location"),
    }),
  }),
  os: object(leaves("name", "version")),
  app: object(leaves("type", "name", "version", "language", "bot", "resolution")),
  utm: object(leaves("source", "medium", "campaign", "term", "content")),
  context: free,
  properties: free,
  traits: free,
  aux: free,
  session_index: ro,
  previous_session_id: ro,
  activity: object({ page_views: ro, entry_page: ro, exit_page: ro, end_reason: ro }),
  merged_from_profile_ids: ro,
});

function allWritable(node: Node): boolean {
  if (node.kind === "leaf") return node.writable;
  if (node.kind === "free") return true;
  return Object.values(node.children).every(allWritable);
}

/** The client-writable paths below `node`, as coarse as possible. */
function expand(node: Node, path: string[]): string[][] {
  if (allWritable(node)) return [path];
  if (node.kind !== "object") return [];
  return Object.entries(node.children).flatMap(([name, child]) => expand(child, [...path, name]));
}

/**
 * Turns update_mask paths into document paths to write. "*" stands for every client-writable
 * field; a message path ("metadata") stands for its client-writable fields.
 * Throws InvalidArgumentError (field "update_mask") for an empty mask, an unknown path, a
 * server-set path or a bad free-form key.
 */
export function resolveMask(paths: readonly string[]): string[][] {
  const violations: FieldViolation[] = [];
  const out: string[][] = [];
  if (paths.length === 0) violations.push({ field: "update_mask", description: "must name at least one path (or \"*\")" });
  for (const raw of paths) {
    if (raw === "*") {
      out.push(...expand(SCHEMA, []));
      continue;
    }
    const segments = raw.split(".");
    let node: Node = SCHEMA;
    let error: string | null = null;
    for (let i = 0; i < segments.length && error === null; i++) {
      const seg = segments[i];
      if (node.kind === "free") {
        const reason = badKeyReason(seg);
        if (reason) error = `path "${raw}": ${reason}`;
        continue;
      }
      if (node.kind === "leaf") {
        error = `unknown path "${raw}"`;
        break;
      }
      const child: Node | undefined = Object.prototype.hasOwnProperty.call(node.children, seg) ? node.children[seg] : undefined;
      if (!child) error = `unknown path "${raw}"`;
      else node = child;
    }
    if (error === null && node.kind === "leaf" && !node.writable) error = `path "${raw}" is set by the server and cannot be updated`;
    if (error !== null) {
      violations.push({ field: "update_mask", description: error });
      continue;
    }
    const expanded = expand(node, segments);
    if (expanded.length === 0) violations.push({ field: "update_mask", description: `path "${raw}" is set by the server and cannot be updated` });
    out.push(...expanded);
  }
  if (violations.length > 0) throw new InvalidArgumentError(violations);
  return out;
}

/** True when `path` is one of `masked` or lies below one of them. */
export function isCovered(masked: readonly string[][], path: readonly string[]): boolean {
  return masked.some((m) => m.length <= path.length && m.every((seg, i) => seg === path[i]));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !isDate(v);
}

/** The value at `path`, or undefined when any step is missing. */
export function getIn(doc: unknown, path: readonly string[]): unknown {
  let cur: unknown = doc;
  for (const seg of path) {
    if (!isPlainObject(cur) || !Object.prototype.hasOwnProperty.call(cur, seg)) return undefined;
    cur = cur[seg];
  }
  return cur;
}

/** Defines an own key, also for names like "__proto__" that plain assignment would not. */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
}

/** Sets `path` in `doc` (mutating), turning missing or non-object steps into objects. */
export function setIn(doc: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur: Record<string, unknown> = doc;
  for (const seg of path.slice(0, -1)) {
    const child = Object.prototype.hasOwnProperty.call(cur, seg) ? cur[seg] : undefined;
    if (isPlainObject(child)) {
      cur = child;
    } else {
      const fresh: Record<string, unknown> = {};
      setOwn(cur, seg, fresh);
      cur = fresh;
    }
  }
  setOwn(cur, path[path.length - 1], value);
}

/** Removes the key at `path` from `doc` (mutating), if it is there. */
export function deleteIn(doc: Record<string, unknown>, path: readonly string[]): void {
  const parent = getIn(doc, path.slice(0, -1));
  if (isPlainObject(parent)) delete parent[path[path.length - 1]];
}

/**
 * Copies the value at each path from `source` into `target` (mutating); a path missing in
 * `source` is removed from `target` (only free-form keys can be missing).
 */
export function copyPaths(target: SessionDoc, source: SessionDoc, paths: readonly string[][]): void {
  for (const path of paths) {
    const value = getIn(source, path);
    if (value === undefined) deleteIn(target as unknown as Record<string, unknown>, path);
    else setIn(target as unknown as Record<string, unknown>, path, structuredClone(value));
  }
}

/**
 * The store patch that turns `current` into `next` on the given paths. A path whose parent is
 * not an object in `current` (a null profile, a missing free-form key) is lifted to that
 * parent, so the patch never writes through a null; paths below another patched path are
 * dropped.
 */
export function buildPatch(current: SessionDoc, next: SessionDoc, paths: readonly string[][]): SessionPatch {
  const lifted = paths.map((path) => {
    for (let i = 1; i < path.length; i++) {
      if (!isPlainObject(getIn(current, path.slice(0, i)))) return path.slice(0, i);
    }
    return [...path];
  });
  lifted.sort((a, b) => a.length - b.length);
  const kept: string[][] = [];
  for (const path of lifted) if (!isCovered(kept, path)) kept.push(path);
  const patch: SessionPatch = { set: [], unset: [] };
  for (const path of kept) {
    const value = getIn(next, path);
    if (value === undefined) patch.unset.push(path);
    else patch.set.push({ path, value: structuredClone(value) });
  }
  return patch;
}
