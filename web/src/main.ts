// The dashboard, served by the HTTP port at `/`: live figures from WatchSessionStats, a live log
// from WatchSessions, details from GetSession/ListSessions. Everything is pushed; nothing polls.

import { createApi, describe, needsKey, setKey } from "./client";
import { Connection, keepOpen } from "./connection";
import { Details } from "./details";
import { LiveLog } from "./log";
import { byId } from "./render";
import { watchStats } from "./stats";

function start(): void {
  const api = createApi();
  const keyForm = byId<HTMLFormElement>("key-form");
  const keyError = byId("key-error");
  const conn = new Connection(byId("conn"), keyForm);
  const details = new Details(api);
  const log = new LiveLog(
    api,
    (session) => void details.show(session),
    (id) => details.forget(id),
  );
  const signal = new AbortController().signal;
  const onError = (err: unknown) => {
    keyError.textContent = needsKey(err) ? describe(err) : "";
    keyError.hidden = !needsKey(err);
    console.warn("stream failed", describe(err));
  };

  keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = (new FormData(keyForm).get("key") ?? "").toString().trim();
    if (!key) return;
    setKey(key);
    keyForm.reset();
    conn.keyGiven();
  });

  const filterForm = byId<HTMLFormElement>("log-filter");
  filterForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const form = new FormData(filterForm);
    const value = (name: string) => (form.get(name) ?? "").toString().trim();
    log.setFilter({ profileId: value("profile"), channel: value("channel"), status: value("status") });
  });

  void keepOpen("stats", conn, (s, live) => watchStats(api, s, live), { needsKey, onError, signal });
  void keepOpen("log", conn, (s, live) => log.watch(s, live), { needsKey, onError, signal });
}

start();
