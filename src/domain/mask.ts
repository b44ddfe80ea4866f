// Field masks for UpdateSession: which paths a client may name, what "*" means, and how the
// masked paths of an update become a store patch.
//
// Paths use the document's snake_case names ("device.geo.city"). Paths into the free-form
// objects (context, properties, traits, aux, metadata.aux, profile.metadata) may go on into
// their keys ("properties.cart.value"). Server-set fields cannot be named.

import { isDate } from "node:util/types";
import { InvalidArgumentError, type FieldViolation } from "./errors";
import type { SessionPatch } from "./store";
import type { SessionDoc } from "./session";
import { DEFAULT_LIMITS, MAX_MASK_PATH_LENGTH, MAX_MASK_PATH_SEGMENTS, MAX_VIOLATIONS } from "./limits";
import { badKeyReason } from "./validate";

type Node = { kind: "leaf"; writable: boolean } | { kind: "free" } | { kind: "object"; children: Record<string, Node> };

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
  traffic: object({ referrer: ro, referrer_host: ro, source: ro, medium: ro, channel_group: ro, click_id: ro }),
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

/** What "*" stands for, computed once. */
const STAR: readonly string[][] = expand(SCHEMA, []);

/**
 * Turns update_mask paths into document paths to write. "*" stands for every client-writable
 * field; a message path ("metadata") stands for its client-writable fields.
 * Throws InvalidArgumentError (field "update_mask") for an empty mask, a mask over `maxPaths`
 * paths (checked first, before any work), a path over MAX_MASK_PATH_LENGTH characters or
 * MAX_MASK_PATH_SEGMENTS segments, an unknown path, a server-set path or a bad free-form key.
 * Repeated paths (and repeated "*") count and resolve once. Linear in the size of the mask.
 */
export function resolveMask(paths: readonly string[], maxPaths: number = DEFAULT_LIMITS.maxMaskPaths): string[][] {
  if (paths.length === 0) throw InvalidArgumentError.field("update_mask", 'must name at least one path (or "*")');
  // Distinct paths only: a mask of 100,000 copies of "*" is one path. The count check comes
  // before anything else is done per path, so an oversized mask costs one pass of hashing.
  const distinct = new Set(paths);
  if (distinct.size > maxPaths) {
    throw InvalidArgumentError.field("update_mask", `must name at most ${maxPaths} distinct paths (MAX_MASK_PATHS), got ${distinct.size}`);
  }
  const violations: FieldViolation[] = [];
  const out: string[][] = [];
  const bad = (description: string): void => {
    if (violations.length < MAX_VIOLATIONS) violations.push({ field: "update_mask", description });
  };
  for (const raw of distinct) {
    if (raw === "*") {
      out.push(...STAR.map((p) => [...p]));
      continue;
    }
    if (raw.length > MAX_MASK_PATH_LENGTH) {
      bad(`path "${raw.slice(0, 64)}…" is longer than ${MAX_MASK_PATH_LENGTH} characters`);
      continue;
    }
    const segments = raw.split(".");
    if (segments.length > MAX_MASK_PATH_SEGMENTS) {
      bad(`path "${raw.slice(0, 64)}…" has more than ${MAX_MASK_PATH_SEGMENTS} segments`);
      continue;
    }
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
      bad(error);
      continue;
    }
    const expanded = expand(node, segments);
    if (expanded.length === 0) bad(`path "${raw}" is set by the server and cannot be updated`);
    out.push(...expanded);
  }
  if (violations.length > 0) throw new InvalidArgumentError(violations);
  return out;
}

/** True when `path` is one of `masked` or lies below one of them (one check: O(masked)). */
export function isCovered(masked: readonly string[][], path: readonly string[]): boolean {
  return masked.some((m) => m.length <= path.length && m.every((seg, i) => seg === path[i]));
}

interface TrieNode {
  end: boolean;
  children: Map<string, TrieNode>;
}

/**
 * A set of paths that answers "is this path in the set or below one of its paths" in time
 * linear in the path's length, whatever the size of the set (checking every path of a mask
 * against a plain list would be quadratic in the mask's size).
 */
export class PathSet {
  private readonly root: TrieNode = { end: false, children: new Map() };

  constructor(paths: Iterable<readonly string[]> = []) {
    for (const p of paths) this.add(p);
  }

  add(path: readonly string[]): void {
    let node = this.root;
    for (const seg of path) {
      let child = node.children.get(seg);
      if (child === undefined) node.children.set(seg, (child = { end: false, children: new Map() }));
      node = child;
    }
    node.end = true;
  }

  covers(path: readonly string[]): boolean {
    let node: TrieNode | undefined = this.root;
    for (const seg of path) {
      if (node.end) return true;
      node = node.children.get(seg);
      if (node === undefined) return false;
    }
    return node.end;
  }
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
    // One walk down `current` per path (linear in its length).
    let cur: unknown = current;
    for (let i = 1; i < path.length; i++) {
      const seg = path[i - 1];
      cur = isPlainObject(cur) && Object.prototype.hasOwnProperty.call(cur, seg) ? cur[seg] : undefined;
      if (!isPlainObject(cur)) return path.slice(0, i);
    }
    return [...path];
  });
  // Shorter paths first, so a covering path is always in `kept` before the paths below it.
  lifted.sort((a, b) => a.length - b.length);
  const kept = new PathSet();
  const patch: SessionPatch = { set: [], unset: [] };
  for (const path of lifted) {
    if (kept.covers(path)) continue;
    kept.add(path);
    const value = getIn(next, path);
    if (value === undefined) patch.unset.push(path);
    else patch.set.push({ path, value: structuredClone(value) });
  }
  return patch;
}
