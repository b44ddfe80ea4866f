// Applying a SessionPatch to a document in memory, for stores that cannot do it natively
// (the SQLite store reads, patches and writes back inside one transaction). The semantics
// mirror MongoDB's $set / $unset on the paths the domain sends: `set` writes the last key of
// a path whose parents exist, `unset` removes a key and ignores one that is already absent.

import { isDate } from "node:util/types";
import type { SessionDoc } from "../domain/session";
import type { SessionPatch } from "../domain/store";

type PlainObject = Record<string, unknown>;

/** A deep copy of a document: objects, arrays and Dates are copied, nothing is shared. */
export function cloneDoc(doc: SessionDoc): SessionDoc {
  return cloneValue(doc) as SessionDoc;
}

/** A deep copy of a patch value (a JSON value, a Date, or a plain object of those). */
export function cloneValue(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  if (isDate(value)) return new Date(value.getTime());
  if (Array.isArray(value)) return value.map(cloneValue);
  const source = value as PlainObject;
  const copy: PlainObject = {};
  for (const key of Object.keys(source)) setOwn(copy, key, cloneValue(source[key]));
  return copy;
}

/**
 * Returns a new document with the patch applied; `doc` is left untouched.
 * Throws a plain Error (a bug in the caller) when a `set` path is empty or its parent is not
 * an existing object: nothing but the last key of a path is ever created.
 */
export function applyPatch(doc: SessionDoc, patch: SessionPatch): SessionDoc {
  const result = cloneDoc(doc);
  const root = result as unknown as PlainObject;
  for (const { path, value } of patch.set) {
    const parent = parentOf(root, path);
    if (parent === undefined) throw new Error(`patch: cannot set "${path.join(".")}": its parent is not an object`);
    setOwn(parent, path[path.length - 1], cloneValue(value));
  }
  for (const path of patch.unset) {
    const parent = parentOf(root, path);
    if (parent !== undefined) delete parent[path[path.length - 1]];
  }
  return result;
}

/** The object holding the last key of `path`, or undefined when the path is empty or a parent is missing. */
function parentOf(root: PlainObject, path: string[]): PlainObject | undefined {
  if (path.length === 0) return undefined;
  let node: PlainObject = root;
  for (let i = 0; i < path.length - 1; i++) {
    // Own properties only: a key like "constructor" must not walk into Object.prototype.
    const child = Object.prototype.hasOwnProperty.call(node, path[i]) ? node[path[i]] : undefined;
    if (!isPlainObject(child)) return undefined;
    node = child;
  }
  return node;
}

function isPlainObject(value: unknown): value is PlainObject {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !isDate(value);
}

/** Assigns an own data property; plain assignment of "__proto__" would change the prototype instead. */
function setOwn(target: PlainObject, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
  } else {
    target[key] = value;
  }
}
