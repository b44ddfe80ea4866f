// Small DOM helpers. Everything shown comes from session data that callers control, so text is
// only ever set with textContent (never innerHTML).

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

export function byId<T extends HTMLElement | SVGElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node as T;
}

export function time(date: Date | undefined): string {
  return date === undefined ? "" : date.toLocaleTimeString(undefined, { hour12: false });
}

/** At most `max` characters of a value shown in a list (ids and names can be long). */
export function clip(text: string, max = 80): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
