// A session's details on click, with the profile's other visits (newest first, from
// ListSessions by profile): visit numbers and the previous session of each.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Session } from "../../gen/session/v1/session_pb";
import { describe, type Api } from "./client";
import { byId, clip, el } from "./render";

const VISITS_SHOWN = 50;

export class Details {
  /** The latest request wins: an older answer arriving late is dropped. */
  private shown = 0;

  constructor(private readonly api: Api) {
    byId("visits").addEventListener("click", (e) => {
      const id = ((e.target as HTMLElement).closest("li[data-session]") as HTMLElement | null)?.dataset.session;
      if (id) void this.showId(id);
    });
  }

  /** Clears the panel when it shows an erased session or one of its profile's visits. */
  forget(id: string): void {
    const shown = byId("details").dataset.session === id || byId("visits").querySelector(`li[data-session="${CSS.escape(id)}"]`);
    if (!shown) return;
    this.shown++;
    byId("details").dataset.session = "";
    byId("details").replaceChildren();
    byId("visits").replaceChildren();
    byId("details-hint").hidden = false;
  }

  async showId(id: string): Promise<void> {
    try {
      const { session } = await this.api.getSession({ id });
      if (session) await this.show(session);
    } catch (err) {
      byId("details-hint").textContent = describe(err);
    }
  }

  async show(session: Session): Promise<void> {
    const ticket = ++this.shown;
    byId("details-hint").hidden = true;
    const box = byId("details");
    box.dataset.session = session.id;
    const dl = el("dl");
    for (const [name, value] of fields(session)) {
      if (value === undefined || value === "") continue;
      dl.append(el("dt", {}, name), el("dd", {}, clip(value, 300)));
    }
    box.replaceChildren(dl);
    const visits = byId("visits");
    const profile = session.profile?.id;
    if (!profile) {
      visits.replaceChildren(el("li", { class: "muted" }, "no profile"));
      return;
    }
    try {
      const page = await this.api.listSessions({ profileId: profile, pageSize: VISITS_SHOWN });
      if (ticket !== this.shown) return;
      visits.replaceChildren(
        ...page.sessions.map((s) => {
          const li = el("li", { "data-session": s.id, "data-visit": String(s.sessionIndex) });
          if (s.id === session.id) li.className = "current";
          const prev = s.previousSessionId ? ` after ${clip(s.previousSessionId, 12)}` : "";
          li.textContent = `#${s.sessionIndex} ${clip(s.id, 40)} ${s.metadata?.status ?? ""}${prev}`;
          return li;
        }),
      );
      if (page.nextPageToken) visits.append(el("li", { class: "muted" }, `(the ${VISITS_SHOWN} newest)`));
    } catch (err) {
      if (ticket === this.shown) visits.replaceChildren(el("li", { class: "error" }, describe(err)));
    }
  }
}

function fields(s: Session): Array<[string, string | undefined]> {
  const ts = (t: Parameters<typeof timestampDate>[0] | undefined) => (t ? timestampDate(t).toISOString() : undefined);
  return [
    ["id", s.id],
    ["profile", s.profile?.id],
    ["visit", s.sessionIndex ? `#${s.sessionIndex}` : undefined],
    ["previous session", s.previousSessionId],
    ["status", s.metadata?.status],
    ["channel", s.metadata?.channel],
    ["started", ts(s.metadata?.time?.insert)],
    ["last activity", ts(s.metadata?.time?.update)],
    ["page views", String(s.activity?.pageViews ?? 0)],
    ["entry page", s.activity?.entryPage],
    ["exit page", s.activity?.exitPage],
    ["end reason", s.activity?.endReason],
    ["device", [s.device?.type, s.device?.brand, s.device?.model].filter((x) => x).join(" ")],
    ["country", s.device?.geo?.country?.code],
    ["os", [s.os?.name, s.os?.version].filter((x) => x).join(" ")],
    ["app", [s.app?.name, s.app?.version].filter((x) => x).join(" ")],
    ["utm", [s.utm?.source, s.utm?.medium, s.utm?.campaign].filter((x) => x).join(" / ")],
    ["traffic", [s.traffic?.channelGroup, [s.traffic?.source, s.traffic?.medium].filter((x) => x).join(" / ")].filter((x) => x).join(": ")],
    ["referrer", s.traffic?.referrer],
    ["merged from", s.mergedFromProfileIds.join(", ")],
    ["revision", String(s.revision)],
  ];
}
