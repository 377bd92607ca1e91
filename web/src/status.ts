// The live status page (server/hpcgate/server/web/static/index.html): follows
// StatusService.WatchSystems over the Connect protocol (fetch, same origin) and renders
// every system, its components, current and planned outages and operator notes.
// On a lost stream it shows "reconnecting" and reconnects with backoff (1 s doubling to
// 30 s); a new stream starts with a fresh snapshot. While no stream can be opened the
// systems are polled with ListSystems at each retry.
//
// Test hooks: each system is an element with data-system="<id>" and data-state="<STATE>"
// (SystemState without its prefix, e.g. ACTIVE); #connection has data-connected="true"
// once a stream delivered its first message (back to "false" when it is lost) and
// data-mode = connecting | live | reconnecting | polling.
import { toJsonString } from "@bufbuild/protobuf";
import { timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { RetryInfoSchema } from "./gen/google/rpc/error_details_pb";
import {
  ComponentKind,
  OutageStatus,
  StatusService,
  SystemSchema,
  SystemState,
  type Component,
  type Note,
  type Outage,
  type System,
} from "./gen/hpcgate/v1/status_pb";

const MIN_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;
const HEARTBEAT_S = 15;
// No message (not even a heartbeat) for this long: the stream is considered dead.
const SILENCE_MS = (HEARTBEAT_S * 2 + 10) * 1_000;
const EXTRAS_EVERY_MS = 60_000;
const NOTES_PER_SYSTEM = 5;

const client = createClient(
  StatusService,
  createConnectTransport({ baseUrl: window.location.origin, useBinaryFormat: true }),
);

// ---- state -----------------------------------------------------------------------------

const systems = new Map<string, System>(); // by id, in configuration order
let planned: Outage[] = [];
let notes: Note[] = [];
const rendered = new Map<string, string>(); // id -> signature of what is on screen

// ---- DOM helpers -----------------------------------------------------------------------

type Child = Node | string | null | undefined | false;

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

function byId(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`status page: #${id} is missing`);
  return el;
}

function timeEl(ts: Timestamp | undefined, fallback = "unknown"): Node {
  if (ts === undefined) return document.createTextNode(fallback);
  const d = timestampDate(ts);
  return h("time", { datetime: d.toISOString() }, d.toLocaleString());
}

function systemId(name: string): string {
  return name.startsWith("systems/") ? name.slice("systems/".length) : name;
}

// ---- states: colour (CSS class), a symbol and a text label -----------------------------

const STATES: Record<SystemState, { symbol: string; label: string }> = {
  [SystemState.UNSPECIFIED]: { symbol: "?", label: "Not yet probed" },
  [SystemState.ACTIVE]: { symbol: "✓", label: "Active" },
  [SystemState.DEGRADED]: { symbol: "▲", label: "Degraded" },
  [SystemState.UNAVAILABLE]: { symbol: "✕", label: "Unavailable" },
  [SystemState.MAINTENANCE]: { symbol: "◆", label: "Maintenance" },
};

function stateName(state: SystemState): string {
  return SystemState[state] ?? "UNSPECIFIED";
}

function stateBadge(state: SystemState): HTMLElement {
  const s = STATES[state] ?? STATES[SystemState.UNSPECIFIED];
  return h(
    "span",
    { class: `state state-${stateName(state).toLowerCase()}` },
    h("span", { class: "symbol", "aria-hidden": "true" }, s.symbol),
    " ",
    s.label,
  );
}

const KINDS: Record<ComponentKind, string> = {
  [ComponentKind.UNSPECIFIED]: "Other",
  [ComponentKind.SCHEDULER]: "Scheduler",
  [ComponentKind.PARTITION]: "Partition",
  [ComponentKind.NODES]: "Nodes",
  [ComponentKind.FILESYSTEM]: "Filesystem",
};

function ms(d: Duration | undefined): string {
  if (d === undefined) return "";
  return `${Math.round(Number(d.seconds) * 1000 + d.nanos / 1e6)} ms`;
}

function bytes(n: bigint): string {
  let v = Number(n);
  for (const unit of ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]) {
    if (v < 1024 || unit === "PiB") return `${v < 10 && unit !== "B" ? v.toFixed(1) : Math.round(v)} ${unit}`;
    v /= 1024;
  }
  return `${n} B`;
}

function details(c: Component): string {
  const d = c.details;
  switch (d.case) {
    case "controller": {
      const hosts = d.value.respondingHosts.join(", ");
      return [hosts && `responding: ${hosts}`, ms(d.value.latency)].filter(Boolean).join(", ");
    }
    case "partition":
      return (
        `${d.value.schedulerState || "?"}, ${d.value.totalNodes} nodes` +
        ` (${d.value.unavailableNodes} unavailable), ${d.value.totalCpus} CPUs`
      );
    case "nodes": {
      const down = d.value.unavailableNodes;
      return (
        `${d.value.availableNodes} of ${d.value.totalNodes} available` +
        (down.length ? `; unavailable: ${down.join(", ")}` : "")
      );
    }
    case "filesystem":
      return (
        `${d.value.path}: ${bytes(d.value.availableBytes)} free of ${bytes(d.value.totalBytes)}` +
        (d.value.latency ? `, ${ms(d.value.latency)}` : "")
      );
    default:
      return "";
  }
}

// ---- rendering -------------------------------------------------------------------------

function outageList(outages: Outage[], empty: string): HTMLElement {
  if (outages.length === 0) return h("p", { class: "none" }, empty);
  return h(
    "ul",
    { class: "outages" },
    ...outages.map((o) =>
      h(
        "li",
        { "data-outage": o.name },
        timeEl(o.startTime),
        " – ",
        timeEl(o.endTime, "open-ended"),
        o.description ? `: ${o.description}` : "",
      ),
    ),
  );
}

function componentTable(s: System, title: string): HTMLElement {
  if (s.components.length === 0) return h("p", { class: "none" }, "No components reported yet.");
  return h(
    "table",
    { class: "components" },
    h("caption", { class: "visually-hidden" }, `Components of ${title}`),
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        ...["Component", "Kind", "State", "Reason", "Details"].map((c) => h("th", { scope: "col" }, c)),
      ),
    ),
    h(
      "tbody",
      null,
      ...s.components.map((c) =>
        h(
          "tr",
          { "data-component": c.name, "data-state": stateName(c.state) },
          h("th", { scope: "row" }, c.displayName || c.name),
          h("td", null, KINDS[c.kind] ?? "Other"),
          h("td", null, stateBadge(c.state)),
          h("td", null, c.reason),
          h("td", null, details(c)),
        ),
      ),
    ),
  );
}

function renderSystem(s: System, id: string, sysPlanned: Outage[], sysNotes: Note[]): HTMLElement {
  const title = s.displayName || id;
  const headingId = `system-${id}`;
  return h(
    "section",
    {
      class: `system system-${stateName(s.state).toLowerCase()}`,
      "data-system": id,
      "data-state": stateName(s.state),
      "aria-labelledby": headingId,
    },
    h(
      "h2",
      { id: headingId },
      title,
      title !== id && h("span", { class: "system-id" }, ` (${id})`),
    ),
    h("p", { class: "system-state" }, stateBadge(s.state), s.reason && h("span", { class: "reason" }, ` — ${s.reason}`)),
    s.description && h("p", { class: "description" }, s.description),
    h(
      "p",
      { class: "meta" },
      "Updated ",
      timeEl(s.updatedAt),
      s.stateChangedAt && h("span", null, " · in this state since ", timeEl(s.stateChangedAt)),
      s.schedulerVersion && ` · ${s.schedulerVersion}`,
    ),
    h("h3", null, "Components"),
    componentTable(s, title),
    h("h3", null, "Current outages"),
    outageList(s.activeOutages, "None."),
    h("h3", null, "Planned outages"),
    outageList(sysPlanned, "None planned."),
    h("h3", null, "Notes"),
    sysNotes.length === 0
      ? h("p", { class: "none" }, "No notes.")
      : h(
          "ul",
          { class: "notes" },
          ...sysNotes.map((n) =>
            h("li", { "data-note": n.name }, n.text, h("span", { class: "meta" }, ` — ${n.author}, `, timeEl(n.createTime))),
          ),
        ),
  );
}

// Renders what changed: sections whose content is the same are left alone (so a screen
// reader's position or a text selection survives other systems' changes).
function render(): void {
  const list = byId("systems");
  list.removeAttribute("aria-busy");
  const keep = new Set<string>();
  let previous: Element | null = null;
  for (const [id, s] of systems) {
    keep.add(id);
    const sysPlanned = planned.filter((o) => o.system === id);
    const sysNotes = notes.filter((n) => n.system === id).slice(0, NOTES_PER_SYSTEM);
    const signature = [
      toJsonString(SystemSchema, s),
      ...sysPlanned.map((o) => o.name + o.description + String(o.startTime?.seconds) + String(o.endTime?.seconds)),
      ...sysNotes.map((n) => n.name + n.text),
    ].join("\n");
    let el = list.querySelector(`:scope > [data-system="${CSS.escape(id)}"]`);
    if (el === null || rendered.get(id) !== signature) {
      const fresh = renderSystem(s, id, sysPlanned, sysNotes);
      if (el === null) list.append(fresh);
      else el.replaceWith(fresh);
      el = fresh;
      rendered.set(id, signature);
    }
    // Keep the configuration order.
    const expected: Element | null = previous === null ? list.firstElementChild : previous.nextElementSibling;
    if (expected !== el) list.insertBefore(el, expected);
    previous = el;
  }
  for (const el of Array.from(list.querySelectorAll(":scope > [data-system]"))) {
    const id = el.getAttribute("data-system") ?? "";
    if (!keep.has(id)) {
      el.remove();
      rendered.delete(id);
    }
  }
  const empty = systems.size === 0;
  byId("no-systems").hidden = !empty;
}

function setConnection(mode: "connecting" | "live" | "reconnecting" | "polling", text: string): void {
  const el = byId("connection");
  el.dataset.connected = mode === "live" ? "true" : "false";
  el.dataset.mode = mode;
  el.className = `connection connection-${mode}`;
  if (el.textContent !== text) el.textContent = text;
  byId("systems").classList.toggle("stale", mode !== "live");
}

function setUpdated(when: Date, how: string): void {
  const el = byId("updated");
  el.replaceChildren(`${how} `, h("time", { datetime: when.toISOString() }, when.toLocaleTimeString()));
}

function announce(text: string): void {
  byId("last-change").textContent = text;
}

// ---- outages and notes (unary calls, refreshed now and then) ---------------------------

let extrasInFlight = false;
let extrasAt = 0;

async function refreshExtras(force = false): Promise<void> {
  if (extrasInFlight || (!force && Date.now() - extrasAt < EXTRAS_EVERY_MS)) return;
  extrasInFlight = true;
  try {
    const [o, n] = await Promise.all([
      client.listOutages({ statuses: [OutageStatus.PLANNED], pageSize: 100 }, { timeoutMs: 10_000 }),
      client.listNotes({ pageSize: 100 }, { timeoutMs: 10_000 }),
    ]);
    planned = [...o.outages].sort(
      (a, b) => Number(a.startTime?.seconds ?? 0n) - Number(b.startTime?.seconds ?? 0n),
    );
    notes = n.notes;
    extrasAt = Date.now();
    render();
  } catch {
    // Outages and notes are secondary: keep what is shown and try again later.
  } finally {
    extrasInFlight = false;
  }
}

// ---- the stream ------------------------------------------------------------------------

let wake: (() => void) | null = null;

function sleep(delayMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, delayMs);
    function done(): void {
      clearTimeout(timer);
      wake = null;
      resolve();
    }
    wake = done;
  });
}

// One stream: resolves when it ends (cleanly or not) with whether any message arrived.
async function watchOnce(): Promise<{ received: boolean; error: ConnectError | null }> {
  const abort = new AbortController();
  let silence = setTimeout(() => abort.abort(), SILENCE_MS);
  let received = false;
  try {
    const stream = client.watchSystems(
      { heartbeatInterval: { seconds: BigInt(HEARTBEAT_S) } },
      { signal: abort.signal },
    );
    for await (const msg of stream) {
      clearTimeout(silence);
      silence = setTimeout(() => abort.abort(), SILENCE_MS);
      if (!received) {
        received = true;
        setConnection("live", "Live: updates appear as they happen.");
      }
      const k = msg.kind;
      if (k.case === "snapshot") {
        systems.clear();
        for (const s of k.value.systems) systems.set(systemId(s.name), s);
        render();
        void refreshExtras(true);
      } else if (k.case === "change" && k.value.system !== undefined) {
        const s = k.value.system;
        const id = systemId(s.name);
        systems.set(id, s);
        render();
        const now = STATES[s.state]?.label ?? stateName(s.state);
        const before = STATES[k.value.previousState]?.label ?? stateName(k.value.previousState);
        announce(
          `${new Date().toLocaleTimeString()}: ${s.displayName || id} is ${now}` +
            (k.value.previousState !== s.state ? ` (was ${before})` : "") +
            (s.reason ? ` — ${s.reason}` : "") +
            ".",
        );
        void refreshExtras(true);
      } else {
        void refreshExtras();
      }
      setUpdated(new Date(), "Last message from the server at");
    }
    return { received, error: null };
  } catch (e) {
    const err = ConnectError.from(e);
    if (abort.signal.aborted) {
      return { received, error: new ConnectError(`no message for ${SILENCE_MS / 1000} s`, Code.DeadlineExceeded) };
    }
    return { received, error: err };
  } finally {
    clearTimeout(silence);
    abort.abort();
  }
}

// While no stream can be opened: the systems once, by ListSystems.
async function pollOnce(): Promise<boolean> {
  try {
    const res = await client.listSystems({ pageSize: 1000 }, { timeoutMs: 10_000 });
    systems.clear();
    for (const s of res.systems) systems.set(systemId(s.name), s);
    render();
    void refreshExtras();
    setUpdated(new Date(), "Polled at");
    return true;
  } catch {
    return false;
  }
}

function retryDelayMs(err: ConnectError | null): number {
  if (err === null) return 0;
  for (const info of err.findDetails(RetryInfoSchema)) {
    if (info.retryDelay) return Number(info.retryDelay.seconds) * 1000 + info.retryDelay.nanos / 1e6;
  }
  return 0;
}

async function main(): Promise<void> {
  window.addEventListener("online", () => wake?.());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") wake?.();
  });
  let delay = MIN_DELAY_MS;
  for (;;) {
    const started = Date.now();
    const { received, error } = await watchOnce();
    // Back to a quick retry after a stream that worked for a while (e.g. a server restart),
    // not after one that keeps failing soon after it opened.
    if (received && Date.now() - started > MAX_DELAY_MS) delay = MIN_DELAY_MS;
    const why = error === null ? "the stream ended" : error.rawMessage || Code[error.code] || "error";
    const wait = Math.min(MAX_DELAY_MS, Math.max(delay, retryDelayMs(error)));
    const seconds = Math.round(wait / 1000);
    if (!received && (await pollOnce())) {
      setConnection(
        "polling",
        `Live updates unavailable (${why}): showing the status as last polled, trying live updates again.`,
      );
    } else {
      setConnection(
        "reconnecting",
        `Connection lost (${why}). Reconnecting in ${seconds} s…` +
          (systems.size ? " The status shown may be out of date." : ""),
      );
    }
    await sleep(wait);
    delay = Math.min(delay * 2, MAX_DELAY_MS);
    if (byId("connection").dataset.mode !== "polling") setConnection("reconnecting", "Reconnecting…");
  }
}

setConnection("connecting", "Connecting to live status…");
void main();
