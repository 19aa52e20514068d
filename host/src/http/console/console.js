// The Mapwright console: plain JavaScript, no build step, served by the server itself.
// It only calls the admin API (/admin/v1) and the directory API (/directory/v1) with the
// admin token the operator signs in with, kept in sessionStorage (gone with the tab).
// Everything that came from an IdP or a plugin is put on the page as text, never as HTML.
"use strict";

const KINDS = ["generic", "okta", "entra", "onelogin", "jumpcloud", "ping", "keycloak", "idcs", "signin"];
const SAMPLE_USER = {
  schemas: ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
  userName: "Jane.Doe@acme.com",
  name: { givenName: "Jane", familyName: "Doe" },
  emails: [{ value: "Jane.Doe@acme.com", type: "work", primary: true }],
  active: true,
  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { department: "Engineering" },
};

let token = sessionStorage.getItem("mapwright-admin-token") || "";

// -- DOM helpers ---------------------------------------------------------------------------

/** Creates an element; string children become text nodes (never parsed as HTML). */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const $ = (sel, root = document) => root.querySelector(sel);

function table(headers, rows, attrs = {}) {
  return h("table", attrs, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), h("tbody", {}, rows));
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => (box.hidden = true), 8000);
}

function json(v) {
  return JSON.stringify(v, null, 2);
}

// -- API -----------------------------------------------------------------------------------

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { Authorization: "Bearer " + token, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (resp.status === 401) {
    signOut();
    throw new Error("Signed out: the token was refused.");
  }
  if (!resp.ok) {
    const err = new Error((data && data.error && data.error.message) || resp.status + " " + resp.statusText);
    // A refused chain entry is named by its index: the editor shows the error there.
    if (data && data.error && data.error.entry !== undefined) err.entry = data.error.entry;
    throw err;
  }
  return data;
}

const admin = (method, path, body) => api(method, "/admin/v1" + path, body);
const seg = encodeURIComponent;

// -- Routing -------------------------------------------------------------------------------

function signOut() {
  token = "";
  sessionStorage.removeItem("mapwright-admin-token");
  render();
}

async function render() {
  const view = $("#view");
  view.replaceChildren();
  $("#login").hidden = !!token;
  $("#logout").hidden = !token;
  $("#crumbs").replaceChildren();
  if (!token) {
    $("#token").focus();
    return;
  }
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "t" && parts[2] === "i" && parts[3]) await connectionPage(view, parts[1], parts[3]);
    else if (parts[0] === "t" && parts[1]) await tenantPage(view, parts[1]);
    else await tenantsPage(view);
  } catch (e) {
    showError(e.message);
  }
}

function crumbs(...links) {
  const nav = $("#crumbs");
  nav.replaceChildren(h("a", { href: "#/" }, "Tenants"));
  for (const [label, href] of links) nav.append(" / ", href ? h("a", { href }, label) : label);
}

// -- Tenants -------------------------------------------------------------------------------

async function tenantsPage(view) {
  crumbs();
  const tenants = await admin("GET", "/tenants");
  view.append(
    h("section", { id: "tenants" }, h("h2", {}, "Tenants"),
      table(["Tenant", "Created"], tenants.map((t) => h("tr", { dataset: { tenant: t.name } },
        h("td", {}, h("a", { href: "#/t/" + seg(t.name) }, t.name)), h("td", { class: "muted" }, t.created))))),
  );
}

// -- One tenant: connections, users, audit ---------------------------------------------------

async function tenantPage(view, tenant) {
  crumbs([tenant]);
  const connections = h("section", { id: "connections" }, h("h2", {}, "IdP connections"));
  const targets = h("section", { id: "targets" }, h("h2", {}, "Delivery targets"));
  const users = h("section", { id: "users" }, h("h2", {}, "Directory users"));
  const audit = h("section", { id: "audit" }, h("h2", {}, "Audit log"));
  view.append(h("h1", {}, tenant), connections, targets, users, audit);
  await Promise.all([connectionsSection(connections, tenant), targetsSection(targets, tenant), usersSection(users, tenant), auditSection(audit, tenant)]);
}

function secretBox(title, lines) {
  return h("div", { class: "secret", id: "secret" }, h("strong", {}, title), lines.map(([k, v]) => h("div", {}, k + ": ", h("code", { "data-secret": k }, v))),
    h("div", { class: "muted" }, "The token is shown once: store it now."));
}

async function connectionsSection(section, tenant) {
  const idps = await admin("GET", "/tenants/" + seg(tenant) + "/idps");
  const out = h("div", { id: "connection-secret" });
  const rows = idps.map((i) => h("tr", { dataset: { idp: i.name } },
    h("td", {}, h("a", { href: "#/t/" + seg(tenant) + "/i/" + seg(i.name) }, i.name)),
    h("td", {}, i.kind),
    h("td", {}, h("code", { class: "base-url" }, i.base_url)),
    h("td", {}, h("span", { class: "badge " + (i.disabled ? "off" : "on") }, i.disabled ? "disabled" : "enabled")),
    h("td", {}, h("button", { type: "button", class: "quiet rotate", onclick: async () => {
      if (!confirm("Issue a new token for " + i.name + "? The current one keeps working for one hour.")) return;
      try {
        const r = await admin("POST", "/tenants/" + seg(tenant) + "/idps/" + seg(i.name) + "/rotate-token", { overlap_secs: 3600 });
        out.replaceChildren(secretBox("New token for " + i.name, [["Token", r.token], ["Previous tokens expire", r.previous_tokens_expire]]));
      } catch (e) { showError(e.message); }
    } }, "Rotate token"))));
  const name = h("input", { name: "name", id: "new-idp-name", required: true, pattern: "[a-z0-9][a-z0-9_-]*", placeholder: "okta-prod" });
  const kind = h("select", { name: "kind", id: "new-idp-kind" }, KINDS.map((k) => h("option", { value: k }, k)));
  const form = h("form", { class: "inline", id: "create-idp", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const r = await admin("POST", "/tenants/" + seg(tenant) + "/idps", { name: name.value, kind: kind.value });
      section.replaceChildren(h("h2", {}, "IdP connections"));
      await connectionsSection(section, tenant);
      $("#connection-secret").replaceChildren(secretBox("Connection " + r.name + " created", [["Base URL", r.base_url], ["Token", r.token]]));
    } catch (e) { showError(e.message); }
  } }, h("label", {}, "Name", name), h("label", {}, "Kind", kind), h("button", { type: "submit", id: "create-idp-btn" }, "Create connection"));
  section.append(table(["Name", "Kind", "SCIM base URL", "Status", ""], rows, { id: "connections-table" }), out, h("h3", {}, "New connection"), form);
}

// -- Delivery targets: state, lag, parked events ---------------------------------------------

function targetState(t) {
  if (t.paused) return ["paused", "off"];
  if (t.needs_sync) return ["reconciling", ""];
  if (t.last_error) return ["failing", "off"];
  if (t.dead_letters.some((d) => d.state === "parked")) return ["needs attention", "off"];
  return ["delivering", "on"];
}

async function targetsSection(section, tenant) {
  const base = "/tenants/" + seg(tenant) + "/targets";
  const reload = async () => {
    section.replaceChildren(h("h2", {}, "Delivery targets"));
    await targetsSection(section, tenant);
  };
  const act = (fn) => async () => { try { await fn(); await reload(); } catch (e) { showError(e.message); } };
  const targets = await admin("GET", base);
  const out = h("div", { id: "target-out" });
  const rows = targets.map((t) => {
    const [state, cls] = targetState(t);
    const tb = base + "/" + seg(t.name);
    return h("tr", { dataset: { target: t.name } },
      h("td", {}, t.name), h("td", {}, t.kind), h("td", {}, h("code", {}, t.url)),
      h("td", {}, h("span", { class: "badge " + cls }, state)),
      h("td", { class: "lag" }, t.lag_events + (t.oldest_undelivered ? " (since " + t.oldest_undelivered + ")" : "")),
      h("td", {}, String(t.delivered)), h("td", { class: "parked" }, String(t.dead_letters.length)),
      h("td", { class: "muted last-error" }, t.last_error ? t.last_error[1] : ""),
      h("td", { class: "shape" }, t.shape_version ? "v" + t.shape_version : "none"),
      h("td", {},
        h("button", { type: "button", class: "quiet pause", onclick: act(() => admin("PATCH", tb, { paused: !t.paused })) }, t.paused ? "Resume" : "Pause"),
        h("button", { type: "button", class: "quiet shaping", onclick: async () => {
          try { out.replaceChildren(...await shapePanel(tb, t, act)); } catch (e) { showError(e.message); }
        } }, "Shaping"),
        t.kind === "scim" ? h("button", { type: "button", class: "quiet sync-preview", onclick: async () => {
          try {
            const plan = await admin("POST", tb + "/sync", { dry_run: true });
            out.replaceChildren(h("h3", {}, "Reconciliation of " + t.name + ": " + plan.actions.length + " changes"),
              h("ul", { id: "sync-plan" }, plan.actions.map((a) => h("li", {}, a.action + " " + (a.user_name || a.name || "")))),
              h("button", { type: "button", id: "sync-run", onclick: act(() => admin("POST", tb + "/sync", {})) }, "Reconcile now"));
          } catch (e) { showError(e.message); }
        } }, "Synchronize") : null));
  });
  const dead = targets.flatMap((t) => t.dead_letters.map((d) => h("tr", { dataset: { dead: d.id } },
    h("td", {}, t.name), h("td", {}, "#" + d.id), h("td", {}, h("span", { class: "badge " + (d.state === "parked" ? "off" : "") }, d.state)),
    h("td", {}, d.resource), h("td", {}, d.event.kind || ""), h("td", {}, String(d.attempts)), h("td", { class: "muted" }, d.answer || ""),
    h("td", {}, d.state === "parked" ? [
      h("button", { type: "button", class: "quiet retry", onclick: act(() => admin("POST", base + "/" + seg(t.name) + "/dead-letters/retry", { ids: [d.id] })) }, "Retry"),
      h("button", { type: "button", class: "quiet skip", onclick: act(() => admin("POST", base + "/" + seg(t.name) + "/dead-letters/skip", { ids: [d.id] })) }, "Skip"),
    ] : null))));
  const f = {
    name: h("input", { id: "new-target-name", required: true, pattern: "[a-z0-9][a-z0-9_-]*", placeholder: "jira" }),
    kind: h("select", { id: "new-target-kind" }, ["scim", "webhook"].map((k) => h("option", { value: k }, k))),
    url: h("input", { id: "new-target-url", required: true, size: 36, placeholder: "https://app.example.com/scim/v2" }),
    token: h("input", { id: "new-target-token", type: "password", autocomplete: "off", placeholder: "SCIM bearer token" }),
  };
  const form = h("form", { class: "inline", id: "create-target", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const body = { name: f.name.value, kind: f.kind.value, url: f.url.value };
      if (f.kind.value === "scim" && f.token.value) body.token = f.token.value;
      const r = await admin("POST", base, body);
      await reload();
      if (r.secret) $("#target-out").replaceChildren(secretBox("Webhook target " + r.target.name + " added", [["Signing secret", r.secret]]));
    } catch (e) { showError(e.message); }
  } }, h("label", {}, "Name", f.name), h("label", {}, "Kind", f.kind), h("label", {}, "URL", f.url), h("label", {}, "Token", f.token),
    h("button", { type: "submit", id: "create-target-btn" }, "Add target"));
  section.append(
    table(["Name", "Kind", "URL", "State", "Lag", "Delivered", "Parked", "Last error", "Shape", ""], rows, { id: "targets-table" }),
    ...(dead.length ? [h("h3", {}, "Undelivered events"), table(["Target", "Id", "State", "Resource", "Change", "Attempts", "Answer", ""], dead, { id: "dead-letters" })] : []),
    out, h("h3", {}, "New target"), form);
}

/** A target's shape versions (what it receives), each previewed on the directory or activated. */
async function shapePanel(tb, t, act) {
  const h0 = await admin("GET", tb + "/shape");
  const preview = h("div", { id: "shape-preview" });
  const outcome = (o) => o.resource ? h("code", {}, JSON.stringify(o.resource)) : h("span", { class: "badge off" }, "held back: " + o.error);
  const show = async (body, label) => {
    const p = await admin("POST", tb + "/shape/preview", body);
    preview.replaceChildren(h("h4", {}, label + ": " + p.changed + " of " + p.rows.length + " sent differently, " + p.held_back + " held back"),
      table(["", "Name", "Now", "Then", "Why"], p.rows.filter((r) => r.changed).map((r) => h("tr", { dataset: { shaped: r.name } },
        h("td", {}, r.kind), h("td", {}, r.name), h("td", {}, outcome(r.active)), h("td", {}, outcome(r.proposed)),
        h("td", { class: "muted" }, r.proposed.decisions.map((d) => d.rule + ": " + d.reason).join("; ")))), { id: "shape-rows" }));
  };
  const versions = h0.versions.map((v) => h("tr", { dataset: { version: v.number } },
    h("td", {}, "v" + v.number + (v.active ? " (active)" : "")), h("td", {}, v.entries.map((e) => e.name).join(" → ")),
    h("td", { class: "muted" }, v.author + ", " + v.created), h("td", { class: "muted" }, v.note),
    h("td", {},
      h("button", { type: "button", class: "quiet shape-preview", onclick: async () => { try { await show({ version: v.number }, "v" + v.number); } catch (e) { showError(e.message); } } }, "Preview"),
      v.active ? null : h("button", { type: "button", class: "quiet shape-activate", onclick: act(() => admin("POST", tb + "/shape/activate", { version: v.number })) }, "Activate"))));
  return [h("h3", {}, "What " + t.name + " receives"),
    versions.length ? table(["Version", "Plugins", "Made", "Note", ""], versions, { id: "shape-versions" })
      : h("p", { class: "muted", id: "shape-versions" }, "No shape versions: users and groups go out as the directory has them (mapwright target shape set)."),
    t.shape_version ? h("button", { type: "button", class: "quiet", id: "shape-off", onclick: act(() => admin("POST", tb + "/shape/activate", { version: null })) }, "Send unshaped") : null,
    preview];
}

async function usersSection(section, tenant) {
  const filter = h("input", { id: "user-filter", size: 40, placeholder: 'userName sw "j"' });
  const body = h("div", { id: "users-body" });
  const load = async () => {
    try {
      const q = filter.value.trim() ? "&filter=" + encodeURIComponent(filter.value.trim()) : "";
      const r = await api("GET", "/directory/v1/" + seg(tenant) + "/Users?sortBy=userName&count=200" + q);
      body.replaceChildren(
        h("p", { class: "muted" }, r.totalResults + " users"),
        table(["userName", "Active", "Groups", "Id"], r.Resources.map((u) => h("tr", { dataset: { user: u.userName } },
          h("td", {}, u.userName),
          h("td", {}, h("span", { class: "badge " + (u.active ? "on" : "off") }, u.active ? "active" : "inactive")),
          h("td", {}, (u.groups || []).map((g) => g.display).join(", ")),
          h("td", { class: "muted" }, h("code", {}, u.id)))), { id: "users-table" }));
    } catch (e) { showError(e.message); }
  };
  section.append(h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); load(); } },
    h("label", {}, "SCIM filter", filter), h("button", { type: "submit", id: "refresh-users" }, "Refresh")), body);
  await load();
}

/** A change record as readable lines: `field: before → after`, groups as +added −removed. */
function diffLines(changes) {
  const lines = [];
  const show = (v) => (v === null || v === undefined ? "∅" : typeof v === "string" ? v : JSON.stringify(v));
  for (const [k, v] of Object.entries(changes || {})) {
    if (k === "groups" && v && (v.added || v.removed)) {
      for (const g of v.added || []) lines.push(h("div", { class: "added" }, "+ group " + g));
      for (const g of v.removed || []) lines.push(h("div", { class: "removed" }, "− group " + g));
    } else if (k === "attributes" && v && typeof v === "object" && !Array.isArray(v)) {
      // userName and active show once, at the top level.
      for (const [a, ba] of Object.entries(v)) if (a !== "userName" && a !== "active") lines.push(h("div", {}, a + ": " + show(ba[0]) + " → " + show(ba[1])));
    } else if (Array.isArray(v) && v.length === 2) {
      lines.push(h("div", {}, k + ": " + show(v[0]) + " → " + show(v[1])));
    } else {
      lines.push(h("div", {}, k + ": " + show(v)));
    }
  }
  return lines;
}

async function auditSection(section, tenant) {
  const f = {
    idp: h("input", { name: "idp", size: 10 }),
    user: h("input", { name: "user", size: 14, id: "audit-user" }),
    since: h("input", { name: "since", size: 22, placeholder: "2026-11-24T00:00:00Z" }),
    until: h("input", { name: "until", size: 22 }),
  };
  const body = h("div", { id: "audit-body" });
  let before = null;
  const load = async (more) => {
    try {
      const q = new URLSearchParams({ limit: "50" });
      for (const [k, input] of Object.entries(f)) if (input.value.trim()) q.set(k, input.value.trim());
      if (more && before) q.set("before", before);
      const r = await admin("GET", "/tenants/" + seg(tenant) + "/audit?" + q);
      before = r.next_before;
      const rows = r.records.map((a) => h("tr", { dataset: { audit: a.id } },
        h("td", { class: "muted" }, a.at), h("td", {}, a.actor), h("td", {}, a.operation + " " + a.resource_type),
        h("td", {}, a.entry || ""), h("td", {}, a.chain_version ?? ""), h("td", {}, diffLines(a.changes))));
      const t = table(["At", "Actor", "Operation", "User", "Rules", "Changes"], rows, { id: "audit-table" });
      if (more) $("#audit-table tbody", body).append(...rows);
      else body.replaceChildren(t);
      $("#audit-older", section).hidden = !before || r.records.length < 50;
    } catch (e) { showError(e.message); }
  };
  section.append(
    h("form", { class: "inline", id: "audit-filter", onsubmit: (ev) => { ev.preventDefault(); load(false); } },
      h("label", {}, "Connection", f.idp), h("label", {}, "User", f.user), h("label", {}, "Since", f.since), h("label", {}, "Until", f.until),
      h("button", { type: "submit" }, "Filter")),
    body, h("button", { type: "button", class: "quiet", id: "audit-older", hidden: true, onclick: () => load(true) }, "Older"));
  await load(false);
}

// -- One connection: chain, history, preview, try ------------------------------------------

async function connectionPage(view, tenant, idp) {
  crumbs([tenant, "#/t/" + seg(tenant)], [idp]);
  const base = "/tenants/" + seg(tenant) + "/idps/" + seg(idp);
  const c = await admin("GET", base + "/chain");
  const active = c.active;
  const chainSection = h("section", { id: "chain" }, h("h2", {}, "Active rules"));
  if (!active) chainSection.append(h("p", { id: "active-version" }, "No chain: users and groups map as the IdP sends them."));
  else {
    chainSection.append(
      h("p", { id: "active-version" }, "Version " + active.number + " · " + active.source + " · by " + active.author + (active.note ? " · " + active.note : "")),
      h("ol", { class: "entries" }, active.definition.entries.map((e) => h("li", {}, h("strong", {}, e.name), " ", h("code", { class: "muted" }, e.plugin.slice(0, 12)), h("pre", {}, json(e.config))))));
  }
  const history = h("section", { id: "history" }, h("h2", {}, "History"),
    table(["Version", "Created", "By", "Source", "Note", "What changed", ""], [...c.versions].reverse().map((v) => h("tr", { dataset: { version: v.number } },
      h("td", {}, String(v.number), v.active ? h("span", { class: "badge on" }, " active") : ""),
      h("td", { class: "muted" }, v.created), h("td", {}, v.author), h("td", {}, v.source), h("td", {}, v.note),
      h("td", { class: "changes" }, (v.summary || []).length ? h("ul", {}, v.summary.map((line) => h("li", {}, line))) : h("span", { class: "muted" }, "nothing")),
      h("td", {}, v.active ? "" : h("button", { type: "button", class: "quiet", onclick: async () => {
        try { await admin("POST", base + "/chain/activate", { number: v.number }); render(); } catch (e) { showError(e.message); }
      } }, "Activate")))), { id: "history-table" }),
    h("h3", {}, "Activations"),
    h("ul", {}, [...c.activations].reverse().map((a) => h("li", {}, "version " + a.number + " at " + a.at + " by " + a.author))));
  const [stored, builtins] = await Promise.all([admin("GET", "/tenants/" + seg(tenant) + "/plugins"), admin("GET", "/tenants/" + seg(tenant) + "/plugins/builtins")]);
  view.append(h("h1", {}, tenant + " / " + idp), chainSection, editorSection(base, c, stored, builtins), history, previewSection(base, c.versions), trySection(base, c.versions));
}

// -- Rule editor ---------------------------------------------------------------------------
// A draft chain edited in the page: started from a stored version, tried on a payload and on
// a sample of the connection's users, previewed against the whole directory, then saved as a
// candidate or activated. Everything goes through the admin API; the draft lives in the page.

/** The plugins an entry can name: first-party ones, then the tenant's stored components. */
function pluginOptions(stored, builtins) {
  return [
    ...builtins.map((b) => ({ value: b, label: b })),
    ...stored.map((p) => ({ value: "sha256:" + p.hash, label: p.name + " " + p.version + " (sha256:" + p.hash.slice(0, 12) + ")", name: p.name, hash: p.hash })),
  ];
}

/** A stored entry as a draft names it: by its plugin's hash, so the draft runs exactly the
 * component the version ran. */
function draftEntry(e) {
  return { plugin: "sha256:" + e.plugin, config: e.config ?? null, limits: e.limits };
}

/** A form over an object configuration: one row per top-level key; values are JSON (strings
 * may be typed bare). Edits go back into `entry.config`. */
function configForm(entry, onChange) {
  const rows = h("tbody", {});
  const parse = (text) => { try { return JSON.parse(text); } catch { return text; } };
  const show = (v) => typeof v === "string" ? v : JSON.stringify(v);
  const sync = () => {
    const o = {};
    for (const tr of rows.children) {
      const k = tr.querySelector(".key").value.trim();
      if (k) o[k] = parse(tr.querySelector(".value").value);
    }
    entry.config = o;
    onChange();
  };
  const row = (k, v) => h("tr", {},
    h("td", {}, h("input", { class: "key", value: k, oninput: sync })),
    h("td", {}, h("input", { class: "value", value: show(v), oninput: sync, spellcheck: "false" })),
    h("td", {}, h("button", { type: "button", class: "quiet", onclick: (ev) => { ev.target.closest("tr").remove(); sync(); } }, "×")));
  for (const [k, v] of Object.entries(entry.config ?? {})) rows.append(row(k, v));
  return h("div", { class: "config-form" },
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "key"), h("th", {}, "value (JSON, or text)"), h("th", {}, ""))), rows),
    h("button", { type: "button", class: "quiet add-key", onclick: () => rows.append(row("", "")) }, "Add key"));
}

function editorSection(base, c, stored, builtins) {
  const options = pluginOptions(stored, builtins);
  let draft = [];
  const list = h("ol", { id: "editor-entries", class: "entries" });
  const out = h("div", { id: "editor-result" });
  const note = h("input", { id: "editor-note", placeholder: "what this version changes, and why", size: 50 });
  const from = versionSelect("editor-from", c.versions, false);
  if (c.active) from.prepend(h("option", { value: String(c.active.number), selected: true }, "version " + c.active.number + " (active)"));

  const start = () => {
    const v = c.versions.find((x) => String(x.number) === from.value);
    draft = v ? v.definition.entries.map(draftEntry) : [];
    draw();
  };

  // The draft as the API takes it; a configuration that is not JSON is shown at its entry.
  const entries = () => {
    let ok = true;
    const body = draft.map((e, i) => {
      if (e.text !== undefined) {
        try { e.config = JSON.parse(e.text || "null"); delete e.text; }
        catch (err) { ok = false; markEntry(i, "The configuration is not JSON: " + err.message); }
      }
      const x = { plugin: e.plugin, config: e.config ?? null };
      if (e.limits) x.limits = e.limits;
      return x;
    });
    return ok ? body : null;
  };

  const markEntry = (i, message) => {
    const li = list.querySelector("li[data-entry='" + i + "']");
    if (!li) return showError(message);
    li.classList.add("invalid");
    li.querySelector(".entry-error").textContent = message;
  };
  const clearMarks = () => list.querySelectorAll("li").forEach((li) => { li.classList.remove("invalid"); li.querySelector(".entry-error").textContent = ""; });

  // Runs an API call on the draft; an error about one entry is shown at that entry.
  const send = async (method, path, body, onOk) => {
    clearMarks();
    const e = entries();
    if (!e) return;
    out.replaceChildren(h("p", { class: "muted" }, "Working…"));
    let data;
    try {
      data = await admin(method, path, { ...body, entries: e });
    } catch (err) {
      out.replaceChildren();
      return err.entry !== undefined ? markEntry(err.entry, err.message) : showError(err.message);
    }
    onOk(data);
  };

  const draw = () => {
    list.replaceChildren(...draft.map((e, i) => {
      const select = h("select", { class: "plugin", onchange: () => { e.plugin = select.value; } },
        options.map((o) => h("option", { value: o.value, selected: o.value === e.plugin }, o.label)));
      if (!options.some((o) => o.value === e.plugin)) select.prepend(h("option", { value: e.plugin, selected: true }, e.plugin));
      const text = h("textarea", { class: "config", spellcheck: "false", rows: 6, oninput: () => { e.text = text.value; } });
      text.value = json(e.config ?? null);
      const body = h("div", { class: "entry-body" }, text);
      const asForm = h("button", { type: "button", class: "quiet as-form", onclick: () => {
        if (e.text !== undefined) { try { e.config = JSON.parse(e.text || "null"); delete e.text; } catch (err) { return markEntry(i, "The configuration is not JSON: " + err.message); } }
        if (e.config !== null && (typeof e.config !== "object" || Array.isArray(e.config))) return markEntry(i, "Only an object configuration has a form.");
        body.replaceChildren(configForm(e, () => { text.value = json(e.config); }));
      } }, "Form");
      const asText = h("button", { type: "button", class: "quiet as-text", onclick: () => { text.value = json(e.config ?? null); body.replaceChildren(text); } }, "Text");
      const move = (d) => { const j = i + d; if (j < 0 || j >= draft.length) return; entries(); [draft[i], draft[j]] = [draft[j], draft[i]]; draw(); };
      return h("li", { dataset: { entry: i } },
        h("div", { class: "entry-head" }, select, asForm, asText,
          h("button", { type: "button", class: "quiet up", onclick: () => move(-1) }, "↑"),
          h("button", { type: "button", class: "quiet down", onclick: () => move(1) }, "↓"),
          h("button", { type: "button", class: "quiet remove", onclick: () => { entries(); draft.splice(i, 1); draw(); } }, "Remove")),
        body, h("p", { class: "entry-error removed" }));
    }));
  };

  const sampleTable = (r) => table(["IdP user", "userName", "Status", "Groups", "What would change", "Why"], r.users.map((u) => h("tr", { dataset: { user: u.name } },
    h("td", {}, u.name), h("td", {}, u.userName ?? ""), h("td", {}, u.status),
    h("td", {}, (u.groups || []).join(", ")),
    h("td", {}, u.error ? h("div", { class: "removed" }, u.error) : "", diffLines(u.changes)),
    h("td", {}, h("ul", {}, (u.decisions || []).map((d) => h("li", {}, d.plugin + " · " + d.rule + ": " + d.reason)))))), { id: "editor-sample" });
  let after = 0;
  const trySample = (next) => send("POST", base + "/chain/try", { sample: 10, after: next ? after : 0 }, (r) => {
    after = r.next_after ?? 0;
    out.replaceChildren(h("h3", {}, "On the connection's users"), r.users.length ? sampleTable(r) : h("p", {}, "This connection has no users yet."),
      r.users.length === 10 ? h("button", { type: "button", class: "quiet", id: "editor-sample-next", onclick: () => trySample(true) }, "Next 10") : null);
  });
  const tryPayload = () => {
    let user;
    try { user = JSON.parse($("#try-payload").value); } catch (e) { return showError("The payload (under Try the rules) is not JSON: " + e.message); }
    send("POST", base + "/chain/try", { user }, (r) => out.replaceChildren(h("h3", {}, "On the payload"),
      r.ok ? table(["", ""], [
        h("tr", {}, h("th", {}, "userName"), h("td", { id: "editor-try-username" }, r.userName)),
        h("tr", {}, h("th", {}, "groups"), h("td", { id: "editor-try-groups" }, r.groups.join(", "))),
        h("tr", {}, h("th", {}, "decisions"), h("td", {}, h("ul", {}, r.decisions.map((d) => h("li", {}, d.plugin + " · " + d.rule + ": " + d.reason))))),
      ]) : h("p", { class: "removed", id: "editor-try-error" }, "Refused (" + r.status + "): " + r.error)));
  };
  const preview = () => send("POST", base + "/chain/preview?limit=500", {}, (r) => {
    const s = r.summary;
    out.replaceChildren(h("h3", {}, "Against the whole directory"),
      h("p", { id: "editor-preview-summary" }, s.users + " users, " + s.groups + " groups: " + s.changed + " would change, " + s.unchanged + " unchanged, " + s.failed + " would fail"),
      r.items.length ? table(["", "Name", "Status", "What would change"], r.items.map((i) => h("tr", {}, h("td", {}, i.resource_type), h("td", {}, i.name), h("td", {}, i.status),
        h("td", {}, i.error ? h("div", { class: "removed" }, i.error) : "", diffLines(i.changes)))), { id: "editor-preview" }) : h("p", {}, "Nothing would change."));
  });
  // The candidate this draft was saved as: activating the same draft activates that version
  // rather than storing it twice.
  let saved = null;
  const save = async (activate) => {
    const e = entries();
    if (activate && saved && e && JSON.stringify(e) === saved.entries) {
      try { await admin("POST", base + "/chain/activate", { number: saved.number }); return render(); } catch (err) { return showError(err.message); }
    }
    send("POST", base + "/chain", { note: note.value, candidate: !activate }, (v) => {
      if (activate) return render();
      saved = { number: v.number, entries: JSON.stringify(e) };
      out.replaceChildren(h("p", { id: "editor-saved" }, "Saved as version " + v.number + " (a candidate: not active)."));
    });
  };

  from.addEventListener("change", start);
  start();
  return h("section", { id: "editor" }, h("h2", {}, "Edit the rules"),
    h("p", { class: "muted" }, "A draft, kept in this page until you save it: start from a version, change the entries, try it, preview it, then save it as a candidate or activate it."),
    h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); start(); } }, h("label", {}, "Start from", from), h("button", { type: "submit", class: "quiet", id: "editor-start" }, "Start over")),
    list,
    h("button", { type: "button", class: "quiet", id: "editor-add", onclick: () => { entries(); draft.push({ plugin: builtins.includes("builtin:expr") ? "builtin:expr" : options[0].value, config: {} }); draw(); } }, "Add entry"),
    h("div", { class: "editor-actions" },
      h("button", { type: "button", id: "editor-try", onclick: tryPayload }, "Try on the payload"),
      h("button", { type: "button", id: "editor-sample-run", onclick: () => trySample(false) }, "Try on 10 users"),
      h("button", { type: "button", id: "editor-preview-run", onclick: preview }, "Preview"),
      note,
      h("button", { type: "button", class: "quiet", id: "editor-save", onclick: () => save(false) }, "Save as candidate"),
      h("button", { type: "button", id: "editor-activate", onclick: () => save(true) }, "Save and activate")),
    out);
}

function versionSelect(id, versions, withActive) {
  return h("select", { id }, withActive ? h("option", { value: "" }, "the active rules") : null,
    [...versions].reverse().filter((v) => withActive || !v.active).map((v) => h("option", { value: String(v.number) }, "version " + v.number + (v.note ? " (" + v.note + ")" : ""))));
}

function previewSection(base, versions) {
  const pick = versionSelect("preview-version", versions, false);
  const out = h("div", { id: "preview-result" });
  const run = async () => {
    if (!pick.value) return showError("Store a candidate version first (chain set --candidate, or the admin API).");
    out.replaceChildren(h("p", { class: "muted" }, "Computing…"));
    try {
      const r = await admin("POST", base + "/chain/preview?limit=500", { number: Number(pick.value) });
      const s = r.summary;
      const changed = r.items.filter((i) => i.status !== "unchanged");
      out.replaceChildren(
        h("p", { id: "preview-summary" }, s.users + " users, " + s.groups + " groups: " + s.changed + " would change, " + s.unchanged + " unchanged, " + s.failed + " would fail" +
          (s.collisions ? " (" + s.collisions + " username collisions)" : "")),
        changed.length === 0 ? h("p", {}, "Nothing would change.") :
          table(["", "Name", "Status", "What would change"], changed.map((i) => h("tr", { dataset: { item: i.name } },
            h("td", {}, i.resource_type), h("td", {}, i.name), h("td", {}, i.status), h("td", {}, i.error ? h("div", { class: "removed" }, i.error) : "", diffLines(i.changes)))), { id: "preview-table" }));
    } catch (e) { out.replaceChildren(); showError(e.message); }
  };
  return h("section", { id: "preview" }, h("h2", {}, "Preview a candidate"),
    h("p", { class: "muted" }, "What a stored version would change for every user and group of this connection, written nowhere."),
    h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); run(); } }, h("label", {}, "Candidate", pick), h("button", { type: "submit", id: "preview-run" }, "Preview")), out);
}

function trySection(base, versions) {
  const payload = h("textarea", { id: "try-payload", spellcheck: "false" });
  payload.value = json(SAMPLE_USER);
  const pick = versionSelect("try-version", versions, true);
  const out = h("div", { id: "try-result" });
  const run = async () => {
    let user;
    try { user = JSON.parse(payload.value); } catch (e) { return showError("The payload is not JSON: " + e.message); }
    try {
      const r = await admin("POST", base + "/chain/try", pick.value ? { user, number: Number(pick.value) } : { user });
      if (!r.ok) return out.replaceChildren(h("p", { class: "removed", id: "try-error" }, "Refused (" + r.status + "): " + r.error));
      out.replaceChildren(
        table(["", ""], [
          h("tr", {}, h("th", {}, "userName"), h("td", { id: "try-username" }, r.userName)),
          h("tr", {}, h("th", {}, "active"), h("td", {}, String(r.active))),
          h("tr", {}, h("th", {}, "groups"), h("td", { id: "try-groups" }, r.groups.join(", "))),
          h("tr", {}, h("th", {}, "attributes"), h("td", {}, h("pre", {}, json(r.attributes)))),
        ]),
        h("h3", {}, "Decisions"),
        table(["Plugin", "Rule", "Reason"], r.decisions.map((d) => h("tr", {}, h("td", {}, d.plugin), h("td", {}, d.rule), h("td", {}, d.reason))), { id: "try-decisions" }));
    } catch (e) { showError(e.message); }
  };
  return h("section", { id: "try" }, h("h2", {}, "Try the rules"),
    h("p", { class: "muted" }, "Paste a SCIM user as the IdP would send it: the rules run in the sandbox and nothing is written."),
    payload, h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); run(); } }, h("label", {}, "Rules", pick), h("button", { type: "submit", id: "try-run" }, "Run")), out);
}

// -- Start ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    token = $("#token").value.trim();
    try {
      await admin("GET", "/tenants");
      sessionStorage.setItem("mapwright-admin-token", token);
      $("#token").value = "";
      render();
    } catch (e) {
      token = "";
      showError("That token was refused.");
      render();
    }
  });
  $("#logout").addEventListener("click", signOut);
  window.addEventListener("hashchange", render);
  render();
});
