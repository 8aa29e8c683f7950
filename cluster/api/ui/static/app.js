// Kumoi console (docs/console.md). Plain JavaScript, no dependencies: it
// reads and changes the cloud only through the public HTTP API
// (docs/api.md), with the user's ACL token as a bearer header (kept in
// sessionStorage, never in a URL), and follows GET /v1/events to stay live.
"use strict";

const KINDS = [
  { kind: "vm", plural: "vms", title: "VMs" },
  { kind: "host", plural: "hosts", title: "Hosts" },
  { kind: "network", plural: "networks", title: "Networks" },
  { kind: "image", plural: "images", title: "Images" },
  { kind: "volume", plural: "volumes", title: "Volumes" },
  { kind: "project", plural: "projects", title: "Projects" },
  { kind: "policy", plural: "policies", title: "Policies" },
];
const RANK = { read: 1, power: 2, write: 3, admin: 4 };

const state = {
  token: sessionStorage.getItem("kumoi-token") || "",
  acl: false,            // ACLs on (GET /v1/status)
  self: null,            // the token (GET /v1/acl/token/self)
  rules: null,           // its policies' rules; null: not readable (then the API decides)
  objects: {},           // kind -> Map(name -> object)
  denied: {},            // kind -> the API's message when listing it was refused
  cluster: null,         // GET /v1/cluster
  events: [],            // the latest events, newest first
  index: 0,              // the state index the objects reflect
  live: false,
};
for (const k of KINDS) state.objects[k.kind] = new Map();

// ---- the API ----------------------------------------------------------------

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (body !== undefined || method === "POST" || method === "PUT") headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!resp.ok) {
    const err = data && data.error ? data.error : { code: "http_" + resp.status, message: resp.status + " " + resp.statusText };
    throw new APIError(resp.status, err.code, err.message);
  }
  return { data, index: Number(resp.headers.get("X-Kumoi-Index") || 0) };
}

// ---- rights -------------------------------------------------------------------

// can says whether the token may do access on kind, as far as the console
// can tell: a management token may do everything; a token whose policies
// it may read gets their rules (a rule with a selector counts: the API
// checks the object); otherwise the API decides, and says so when it refuses.
function can(kind, access) {
  if (!state.acl || !state.self || state.self.type === "management" || state.rules === null) return true;
  return state.rules.some(r => (r.kind === kind || r.kind === "*") && RANK[r.access] >= RANK[access]);
}

async function loadRights() {
  state.self = null; state.rules = null;
  if (!state.acl) return;
  state.self = (await api("GET", "/v1/acl/token/self")).data;
  if (state.self.type === "management") return;
  if (state.self.type === "node") { state.rules = [{ kind: "host", access: "read" }]; return; }
  const rules = [];
  for (const p of state.self.policies || []) {
    try { rules.push(...((await api("GET", "/v1/acl/policies/" + encodeURIComponent(p))).data.rules || [])); }
    catch (e) { return; } // not allowed to read its own policies: leave it to the API
  }
  state.rules = rules;
}

// ---- state ---------------------------------------------------------------------

async function loadAll() {
  // The stream follows from the index this controller had applied before
  // the lists were read (each list's index is its own kind's): events
  // replayed from there are applied again, in order, and the state comes
  // to the newest; none is missed.
  const st = (await api("GET", "/v1/status")).data;
  const index = st.applied_index || 0;
  for (const k of KINDS) {
    try {
      const r = await api("GET", "/v1/" + k.plural);
      const m = new Map();
      for (const o of r.data || []) m.set(o.name, o);
      state.objects[k.kind] = m;
      delete state.denied[k.kind];
    } catch (e) {
      if (e.status === 403) { state.denied[k.kind] = e.message; state.objects[k.kind] = new Map(); } else throw e;
    }
  }
  await loadCluster();
  state.index = index;
}

async function loadCluster() {
  try { state.cluster = (await api("GET", "/v1/cluster")).data; } catch (e) { if (e.status !== 403) throw e; state.cluster = null; }
}

function applyEvent(ev) {
  if (ev.type === "heartbeat") return false;
  if (ev.type === "reset") throw new Error("reset");
  const m = state.objects[ev.kind];
  if (!m) return false;
  if (ev.type === "deleted") m.delete(ev.name); else if (ev.object) m.set(ev.name, ev.object);
  state.events.unshift(ev);
  state.events.length = Math.min(state.events.length, 200);
  return true;
}

// follow reads GET /v1/events after state.index until it breaks, then
// re-lists everything and follows again, showing the connection's state.
async function follow() {
  let backoff = 500;
  for (;;) {
    try {
      if (!state.live) await loadAll();
      const headers = { Accept: "application/x-ndjson" };
      if (state.token) headers.Authorization = "Bearer " + state.token;
      const resp = await fetch("/v1/events?index=" + state.index, { headers });
      if (!resp.ok) throw new Error("events: " + resp.status);
      setLive(true); backoff = 500; render();
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the event stream ended");
        buf += dec.decode(value, { stream: true });
        let nl, changed = false;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim(); buf = buf.slice(nl + 1);
          if (!line) continue;
          const ev = JSON.parse(line);
          state.index = Math.max(state.index, ev.index);
          if (applyEvent(ev)) changed = true;
        }
        if (changed) scheduleRender();
      }
    } catch (e) {
      setLive(false, e.message);
      await new Promise(res => setTimeout(res, backoff));
      backoff = Math.min(backoff * 2, 5000);
    }
  }
}

function setLive(live, why) {
  state.live = live;
  const c = document.getElementById("conn");
  c.textContent = live ? "live" : "connection lost, reconnecting…";
  c.className = "conn " + (live ? "ok" : "bad");
  if (!live && why) c.title = why;
}

// ---- rendering helpers ---------------------------------------------------------

// h makes an element. Its event handlers are kept in el.on, called by one
// listener per event type (dispatch), so that morph can keep an element
// and give it the handlers of the newer render.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  el.on = {};
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) { el.on[k.slice(2)] = v; el.addEventListener(k.slice(2), dispatch); }
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

function dispatch(e) {
  const f = this.on && this.on[e.type];
  if (f) return f(e);
}

// keyOf names an element that must stay itself across renders: its id or
// its first data-* attribute (a row's data-vm, data-host, data-policy).
function keyOf(n) {
  if (n.nodeType !== Node.ELEMENT_NODE) return "";
  if (n.id) return "#" + n.id;
  for (const a of n.attributes) if (a.name.startsWith("data-")) return n.nodeName + "[" + a.name + "=" + a.value + "]";
  return "";
}

// morph makes parent's children look like nodes (a newer render) while
// keeping every element that is still there: a keyed one by its key, the
// others in their place when of the same tag. A live update then changes
// the text, attributes and handlers of the row under the user's pointer
// instead of replacing it, so a click that lands during an update is not
// lost (nor a field's text, nor the focus).
function morph(parent, nodes) {
  const keyed = new Map();
  for (const o of parent.childNodes) { const k = keyOf(o); if (k) keyed.set(k, o); }
  let cursor = parent.firstChild;
  for (const n of nodes) {
    const k = keyOf(n);
    let o = k ? keyed.get(k) : (cursor && !keyOf(cursor) ? cursor : null);
    if (o && o.nodeName !== n.nodeName) o = null;
    if (o) { keyed.delete(k); patch(o, n); } else o = n;
    if (o === cursor) cursor = cursor.nextSibling; else parent.insertBefore(o, cursor);
  }
  while (cursor) { const next = cursor.nextSibling; cursor.remove(); cursor = next; }
}

function patch(o, n) {
  if (o.nodeType !== Node.ELEMENT_NODE) { if (o.nodeValue !== n.nodeValue) o.nodeValue = n.nodeValue; return; }
  for (const a of [...o.attributes]) if (!n.hasAttribute(a.name)) o.removeAttribute(a.name);
  for (const a of n.attributes) {
    if (a.name === "style") { if (o.style.cssText !== n.style.cssText) o.style.cssText = n.style.cssText; } // CSSOM (the CSP)
    else if (o.getAttribute(a.name) !== a.value) o.setAttribute(a.name, a.value);
  }
  const on = n.on || {};
  for (const t of Object.keys(o.on || {})) if (!(t in on)) o.removeEventListener(t, dispatch);
  for (const t of Object.keys(on)) o.addEventListener(t, dispatch); // once per type: the same listener
  o.on = on;
  morph(o, [...n.childNodes]);
}

function bar(used, total, label) {
  const pct = total > 0 ? Math.min(100, Math.round(used * 100 / total)) : 0;
  const fill = h("span", {});
  fill.style.width = pct + "%"; // CSSOM: the page's CSP allows no inline style attribute
  return h("span", { class: "bar", role: "img", "aria-label": label + ": " + pct + "%" }, fill);
}

const mib = n => (n >= 1024 && n % 1024 === 0) ? (n / 1024) + " GiB" : n + " MiB";
const spec = o => o.spec || {};
const status = o => o.status || {};
const sorted = m => [...m.values()].sort((a, b) => a.name.localeCompare(b.name));

function showError(e) {
  const a = document.getElementById("alert");
  a.textContent = e instanceof APIError ? e.message + " (" + e.status + " " + e.code + ")" : String(e.message || e);
  a.hidden = false;
}
function clearError() { document.getElementById("alert").hidden = true; }

function confirmAction(text) {
  const d = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise(resolve => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

// act runs an API call for a button, after a confirmation when asked,
// and shows the API's message when it is refused.
async function act(text, fn) {
  if (text && !(await confirmAction(text))) return;
  clearError();
  try { await fn(); } catch (e) { showError(e); }
}

function actionButton(label, enabled, onclick, cls) {
  return h("button", { type: "button", disabled: !enabled, class: cls, onclick, title: enabled ? null : "your token may not do this" }, label);
}

// ---- views --------------------------------------------------------------------

function viewOverview() {
  const vms = sorted(state.objects.vm), hosts = sorted(state.objects.host);
  const phases = {};
  for (const v of vms) phases[status(v).phase || "unknown"] = (phases[status(v).phase || "unknown"] || 0) + 1;
  const cl = state.cluster;
  return [
    h("h1", {}, "Overview"),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "ov-ctl" }, h("h2", { id: "ov-ctl" }, "Controllers"),
        cl ? h("table", {}, h("thead", {}, h("tr", {}, ["Server", "Role", "Leader", "Health", "Last index"].map(t => h("th", { scope: "col" }, t)))),
          h("tbody", {}, (cl.servers || []).map(s => h("tr", {}, h("td", {}, s.id), h("td", {}, s.role), h("td", {}, s.leader ? "leader" : ""),
            h("td", { class: s.health === "ok" ? "state-ready" : "state-down" }, s.health), h("td", {}, s.last_index)))))
          : h("p", { class: "notice" }, "Your token may not read the cluster (cluster:read).")),
      h("section", { class: "card", "aria-labelledby": "ov-vms" }, h("h2", { id: "ov-vms" }, "VMs by phase"),
        h("table", {}, h("tbody", {}, Object.keys(phases).sort().map(p => h("tr", {}, h("td", { class: "phase-" + p }, p), h("td", {}, phases[p])))))),
      h("section", { class: "card", "aria-labelledby": "ov-hosts" }, h("h2", { id: "ov-hosts" }, "Hosts"),
        h("table", {}, h("tbody", {}, hosts.map(o => {
          const st = status(o), cap = st.capacity || {}, al = st.allocated || {};
          return h("tr", {}, h("td", {}, h("a", { href: "#/hosts" }, o.name)), h("td", { class: "state-" + st.state }, st.state),
            h("td", {}, bar(al.cpus || 0, cap.cpus || 0, o.name + " CPUs allocated"), " ", (al.cpus || 0) + "/" + (cap.cpus || 0) + " CPUs"),
            h("td", {}, bar(al.memory_mib || 0, cap.memory_mib || 0, o.name + " memory allocated")));
        })))),
      h("section", { class: "card", "aria-labelledby": "ov-ev" }, h("h2", { id: "ov-ev" }, "Recent events"),
        eventsTable(state.events.slice(0, 10)))),
  ];
}

function eventsTable(evs) {
  if (!evs.length) return h("p", { class: "notice" }, "No change yet.");
  return h("table", {}, h("thead", {}, h("tr", {}, ["Index", "Change", "Object", "Now"].map(t => h("th", { scope: "col" }, t)))),
    h("tbody", {}, evs.map(ev => h("tr", {}, h("td", {}, ev.index), h("td", {}, ev.type), h("td", {}, ev.kind + " " + ev.name),
      h("td", {}, ev.object && ev.type !== "deleted" ? (status(ev.object).phase || status(ev.object).state || "") : "")))));
}

function viewHosts() {
  const vms = sorted(state.objects.vm);
  const canWrite = can("host", "write");
  return [h("h1", {}, "Hosts"), denied("host"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Host", "State", "Schedulable", "CPUs", "Memory", "VMs", "Actions"].map(t => h("th", { scope: "col" }, t)))),
      h("tbody", {}, sorted(state.objects.host).map(o => {
        const st = status(o), sp = spec(o), cap = st.capacity || {}, al = st.allocated || {};
        const on = vms.filter(v => status(v).host === o.name).map(v => v.name);
        return h("tr", { "data-host": o.name }, h("td", {}, o.name), h("td", { class: "state-" + st.state, title: st.reason || "" }, st.state),
          h("td", {}, sp.unschedulable ? "no (drained)" : "yes"),
          h("td", {}, bar(al.cpus || 0, cap.cpus || 0, "CPUs"), " " + (al.cpus || 0) + "/" + (cap.cpus || 0)),
          h("td", {}, bar(al.memory_mib || 0, cap.memory_mib || 0, "memory"), " " + mib(al.memory_mib || 0) + "/" + mib(cap.memory_mib || 0)),
          h("td", {}, on.join(", ") || "-"),
          h("td", { class: "actions" }, sp.unschedulable
            ? actionButton("Enable", canWrite, () => act(null, () => setSchedulable(o.name, true)))
            : actionButton("Drain", canWrite, () => act("Drain " + o.name + "? No new VM will be placed on it.", () => setSchedulable(o.name, false)))));
      })))];
}

async function setSchedulable(name, yes) {
  const cur = (await api("GET", "/v1/hosts/" + encodeURIComponent(name))).data;
  const sp = Object.assign({}, cur.spec);
  if (yes) { delete sp.unschedulable; delete sp.drain; } else sp.unschedulable = true;
  await api("PUT", "/v1/hosts/" + encodeURIComponent(name) + "?cas=" + cur.modify_index, { labels: cur.labels, spec: sp });
}

function denied(kind) {
  return state.denied[kind] ? h("p", { class: "notice" }, "Not shown: " + state.denied[kind]) : null;
}

let vmFilter = { label: "", phase: "", host: "" };

function matches(o) {
  const st = status(o);
  if (vmFilter.phase && st.phase !== vmFilter.phase) return false;
  if (vmFilter.host && st.host !== vmFilter.host) return false;
  for (const term of vmFilter.label.split(",").map(s => s.trim()).filter(Boolean)) {
    const [k, v] = term.split("=");
    const labels = o.labels || {};
    if (v === undefined ? !(k in labels) : labels[k] !== v) return false;
  }
  return true;
}

function viewVMs() {
  const canCreate = can("vm", "write"), canPower = can("vm", "power");
  const filter = h("form", { class: "inline", role: "search", "aria-label": "Filter VMs", onsubmit: e => e.preventDefault() },
    h("label", {}, "Filter by labels (k=v,…)", h("input", { id: "f-label", value: vmFilter.label, oninput: e => { vmFilter.label = e.target.value; scheduleRender(); } })),
    h("label", {}, "Phase", h("select", { id: "f-phase", onchange: e => { vmFilter.phase = e.target.value; scheduleRender(); } },
      ["", "pending", "scheduled", "starting", "running", "stopping", "stopped", "migrating", "failed", "lost"].map(p => h("option", { value: p, selected: p === vmFilter.phase }, p || "any")))),
    h("label", {}, "Host", h("select", { id: "f-host", onchange: e => { vmFilter.host = e.target.value; scheduleRender(); } },
      [h("option", { value: "" }, "any"), ...sorted(state.objects.host).map(o => h("option", { value: o.name, selected: o.name === vmFilter.host }, o.name))])));
  const create = h("form", { class: "inline", id: "create-vm", "aria-label": "Create a VM", onsubmit: e => { e.preventDefault(); createVM(e.target); } },
    h("label", {}, "Name", h("input", { name: "name", id: "c-name", required: true, pattern: "[a-z0-9]([a-z0-9-]*[a-z0-9])?" })),
    h("label", {}, "CPUs", h("input", { name: "cpus", id: "c-cpus", type: "number", min: 1, value: 1, required: true })),
    h("label", {}, "Memory (MiB)", h("input", { name: "memory", id: "c-memory", type: "number", min: 64, value: 512, required: true })),
    h("label", {}, "Labels (k=v,…)", h("input", { name: "labels", id: "c-labels" })),
    h("label", {}, "HA", h("select", { name: "ha", id: "c-ha" }, h("option", { value: "none" }, "none"), h("option", { value: "restart" }, "restart"))),
    h("button", { type: "submit", id: "c-submit", disabled: !canCreate }, "Create VM"));
  const rows = sorted(state.objects.vm).filter(matches).map(o => {
    const st = status(o), sp = spec(o), n = encodeURIComponent(o.name);
    return h("tr", { "data-vm": o.name }, h("td", {}, h("a", { href: "#/vms/" + n }, o.name)), h("td", {}, sp.cpus), h("td", {}, mib(sp.memory_mib || 0)),
      h("td", { class: "phase-" + st.phase }, st.phase), h("td", {}, st.host || "-"), h("td", {}, st.reason || ""),
      h("td", { class: "actions" }, vmActions(o, canPower, canCreate)));
  });
  return [h("h1", {}, "VMs"), denied("vm"),
    canCreate ? h("fieldset", {}, h("legend", {}, "Create a VM"), create) : h("p", { class: "notice" }, "Your token may not create VMs."),
    h("fieldset", {}, h("legend", {}, "Filter"), filter),
    h("table", {}, h("thead", {}, h("tr", {}, ["Name", "CPUs", "Memory", "Phase", "Host", "Reason", "Actions"].map(t => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))];
}

function vmActions(o, canPower, canWrite) {
  const n = encodeURIComponent(o.name), power = spec(o).power;
  const post = (a, body) => api("POST", "/v1/vms/" + n + "/" + a, body);
  return [
    power === "running" ? actionButton("Stop", canPower, () => act("Stop " + o.name + "?", () => post("stop")), "act-stop")
      : actionButton("Start", canPower, () => act(null, () => post("start")), "act-start"),
    actionButton("Reboot", canPower && power === "running", () => act("Reboot " + o.name + "?", () => post("reboot")), "act-reboot"),
    actionButton("Migrate", canPower, () => act("Move " + o.name + " to another host (restarting it if it runs)?", () => post("migrate", power === "running" ? { restart: true } : {})), "act-migrate"),
    actionButton("Delete", canWrite, () => act("Delete " + o.name + "? This cannot be undone.", () => api("DELETE", "/v1/vms/" + n)), "danger act-delete"),
  ];
}

async function createVM(form) {
  const f = new FormData(form);
  const labels = {};
  for (const term of String(f.get("labels") || "").split(",").map(s => s.trim()).filter(Boolean)) {
    const [k, v] = term.split("="); labels[k] = v || "";
  }
  await act(null, async () => {
    await api("POST", "/v1/vms", { name: f.get("name"), labels, spec: { cpus: Number(f.get("cpus")), memory_mib: Number(f.get("memory")), ha: f.get("ha") } });
    form.reset();
  });
}

// The history of a VM: the events the controllers still keep (GET
// /v1/events?index=0&kind=vm, read up to the index the page had reached
// when it opened, then closed; shown as it arrives), then those seen since.
const histories = new Map(); // name -> {upTo, events (newest first)}
async function loadHistory(name, hist) {
  const headers = { Accept: "application/x-ndjson" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const ctl = new AbortController();
  try {
    const resp = await fetch("/v1/events?index=0&kind=vm", { headers, signal: ctl.signal });
    if (!resp.ok) return;
    const reader = resp.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (let done = false; !done;) {
      const r = await reader.read();
      if (r.done) break;
      buf += dec.decode(r.value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim(); buf = buf.slice(nl + 1);
        if (!line) continue;
        const ev = JSON.parse(line);
        if (ev.index > hist.upTo || (ev.type === "heartbeat" && ev.index >= hist.upTo)) { done = true; break; }
        if (ev.name === name && ev.type !== "heartbeat" && ev.type !== "reset") hist.events.unshift(ev);
      }
      scheduleRender();
    }
  } catch (e) { /* shown as far as read */ } finally { ctl.abort(); }
}

function vmHistory(name) {
  let hist = histories.get(name);
  if (!hist) {
    hist = { upTo: state.index, events: [] };
    histories.set(name, hist);
    loadHistory(name, hist);
  }
  const since = state.events.filter(ev => ev.kind === "vm" && ev.name === name && ev.index > hist.upTo);
  return since.concat(hist.events);
}

async function viewVM(name) {
  const o = state.objects.vm.get(name);
  if (!o) return [h("h1", {}, "VM " + name), h("p", {}, "No such VM (deleted?). "), h("a", { href: "#/vms" }, "All VMs")];
  const st = status(o);
  const history = vmHistory(name);
  return [h("h1", {}, "VM " + name),
    h("p", {}, "Phase ", h("strong", { class: "phase-" + st.phase, id: "vm-phase" }, st.phase), st.host ? " on " + st.host : "", st.reason ? " — " + st.reason : ""),
    h("div", { class: "actions" }, vmActions(o, can("vm", "power"), can("vm", "write"))),
    h("h2", {}, "Spec"), h("pre", {}, JSON.stringify(o.spec, null, 2)),
    h("h2", {}, "Status"), h("pre", {}, JSON.stringify(o.status, null, 2)),
    h("h2", {}, "Labels"), h("pre", {}, JSON.stringify(o.labels || {}, null, 2)),
    h("h2", {}, "History"), h("div", { id: "vm-history" }, eventsTable(history))];
}

function viewPolicies() {
  const canWrite = can("policy", "write");
  return [h("h1", {}, "Policies"), denied("policy"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Policy", "State", "Handled", "Failed", "Recent errors", "Recent output", "Actions"].map(t => h("th", { scope: "col" }, t)))),
      h("tbody", {}, sorted(state.objects.policy).map(o => {
        const st = status(o), sp = spec(o);
        return h("tr", { "data-policy": o.name }, h("td", {}, o.name), h("td", { title: st.error || "" }, sp.disabled ? "disabled" : st.state),
          h("td", {}, st.handled || 0), h("td", {}, st.failed || 0),
          h("td", {}, (st.recent_errors || []).slice(-3).map(e => h("div", {}, e.event + ": " + e.message))),
          h("td", {}, (st.recent_output || []).slice(-3).map(l => h("div", {}, l))),
          h("td", { class: "actions" }, actionButton(sp.disabled ? "Enable" : "Disable", canWrite,
            () => act(sp.disabled ? null : "Disable policy " + o.name + "?", () => setDisabled(o.name, !sp.disabled)))));
      })))];
}

async function setDisabled(name, disabled) {
  const cur = (await api("GET", "/v1/policies/" + encodeURIComponent(name))).data;
  const sp = Object.assign({}, cur.spec, { disabled });
  await api("PUT", "/v1/policies/" + encodeURIComponent(name) + "?cas=" + cur.modify_index, { labels: cur.labels, spec: sp });
}

function viewKind(kind, title) {
  return [h("h1", {}, title), denied(kind),
    h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Labels", "Spec", "Status"].map(t => h("th", { scope: "col" }, t)))),
      h("tbody", {}, sorted(state.objects[kind]).map(o => h("tr", {}, h("td", {}, o.name),
        h("td", {}, Object.entries(o.labels || {}).map(([k, v]) => k + "=" + v).join(", ")),
        h("td", {}, h("code", {}, JSON.stringify(o.spec))),
        h("td", {}, h("code", {}, JSON.stringify(o.status)))))))];
}

function viewLogin(message) {
  const form = h("form", { class: "login", "aria-label": "Log in", onsubmit: async e => {
    e.preventDefault();
    state.token = new FormData(e.target).get("token").trim();
    try {
      await loadRights();
      sessionStorage.setItem("kumoi-token", state.token);
      start();
    } catch (err) { state.token = ""; render(viewLogin(err.message)); }
  } },
    h("p", {}, "ACLs are on: give an ACL token's secret (kumoi acl token create). It is kept in this tab's session storage only."),
    h("label", {}, "Token secret", h("input", { name: "token", id: "token", type: "password", autocomplete: "off", required: true })),
    h("p", {}, h("button", { type: "submit", id: "login" }, "Log in")),
    message ? h("p", { role: "alert", class: "alert" }, message) : null);
  return [h("h1", {}, "Kumoi console"), form];
}

// ---- routing ------------------------------------------------------------------

let pending = false;
function scheduleRender() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

let loggedIn = false;
async function render(view) {
  const main = document.getElementById("main");
  const route = location.hash.replace(/^#\//, "") || "overview";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === "#/" + route.split("/")[0]) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  let nodes = view;
  if (!nodes) {
    if (!loggedIn) return;
    const [page, arg] = route.split("/");
    switch (page) {
      case "hosts": nodes = viewHosts(); break;
      case "vms": nodes = arg ? await viewVM(decodeURIComponent(arg)) : viewVMs(); break;
      case "policies": nodes = viewPolicies(); break;
      case "networks": case "images": case "volumes": case "projects": {
        const k = KINDS.find(k => k.plural === page); nodes = viewKind(k.kind, k.title); break;
      }
      default: nodes = viewOverview();
    }
  }
  // Keep the focus and the typed text of a field the user is in.
  const active = document.activeElement && document.activeElement.id;
  const sel = active && document.activeElement.selectionStart;
  const keep = {};
  for (const el of main.querySelectorAll("form#create-vm input, form#create-vm select")) keep[el.id] = el.value;
  morph(main, nodes.filter(Boolean));
  for (const [id, v] of Object.entries(keep)) { const el = document.getElementById(id); if (el) el.value = v; }
  if (active) {
    const el = document.getElementById(active);
    if (el) { el.focus(); if (sel !== null && sel !== undefined && el.setSelectionRange) try { el.setSelectionRange(sel, sel); } catch (e) { /* not a text field */ } }
  }
}

let started = false;
async function start() {
  loggedIn = true;
  document.getElementById("logout").hidden = !state.acl;
  render();
  if (!started) {
    started = true;
    follow();
    setInterval(async () => { try { await loadCluster(); scheduleRender(); } catch (e) { /* the stream shows the connection */ } }, 3000);
  }
}

function initTheme() {
  const saved = localStorage.getItem("kumoi-theme");
  if (saved) document.documentElement.dataset.theme = saved;
  document.getElementById("theme").addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme
      ? document.documentElement.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
    document.documentElement.dataset.theme = dark ? "light" : "dark";
    localStorage.setItem("kumoi-theme", document.documentElement.dataset.theme);
  });
}

async function main() {
  initTheme();
  window.addEventListener("hashchange", () => { clearError(); render(); });
  document.getElementById("logout").addEventListener("click", () => { sessionStorage.removeItem("kumoi-token"); location.reload(); });
  try {
    const st = (await api("GET", "/v1/status")).data;
    state.acl = !!(st.acl && st.acl.enabled);
  } catch (e) { showError(e); }
  if (state.acl && !state.token) { render(viewLogin()); return; }
  try { await loadRights(); } catch (e) {
    sessionStorage.removeItem("kumoi-token"); state.token = "";
    render(viewLogin(e.message)); return;
  }
  start();
}

main();
