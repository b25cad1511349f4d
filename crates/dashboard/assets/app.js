// The cohort dashboard page: one `status` server-sent event per update (see
// docs/observability.md for the data). No library, no network beyond this server.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
document.getElementById("api-link").href = "api/status" + q;
document.getElementById("metrics-link").href = "metrics" + q;

const $ = (id) => document.getElementById(id);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const bytes = (n) => {
  if (n < 1024) return n + " B";
  const u = ["KiB", "MiB", "GiB", "TiB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(1) + " " + u[i];
};
const secs = (s) => {
  if (s < 60) return s.toFixed(0) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
};
// `cohort_pool::pmap::Batched<my_crate::f>` → `Batched<f>`: paths dropped.
const short = (name) => name.replace(/\b[A-Za-z_][A-Za-z0-9_]*::/g, "");
const td = (text, cls) => el("td", cls ? { class: cls } : {}, String(text));

function renderWorkers(s) {
  const body = $("workers").tBodies[0];
  body.replaceChildren(...s.workers.map((w) => {
    const state = w.state === "dead" && w.reason ? "dead: " + w.reason : w.state;
    return el("tr", { "data-pid": w.pid, "data-state": w.state },
      td(w.pid), td(w.host || "–"), td(w.os_pid || "–"), td(state, "state"),
      td(secs(w.uptime_s), "num"), td(bytes(w.rss_bytes), "num"),
      td(w.cpu_percent.toFixed(0) + " %", "num"), td(w.calls_in_flight, "num"),
      td(w.calls_done, "num"), td(w.calls_failed, "num"),
      td(bytes(w.bytes_in), "num"), td(bytes(w.bytes_out), "num"));
  }));
  const d = s.driver;
  $("driver").textContent = `driver: pid ${d.pid} · OS pid ${d.os_pid} on ${d.host} · up ${secs(d.uptime_s)} · RSS ${bytes(d.rss_bytes)} · CPU ${d.cpu_percent.toFixed(0)} %`;
  const c = s.workers_by_state;
  $("summary").textContent = `${s.workers.length - c.dead} workers · ${c.busy} busy · ${c.idle} idle · ${c.starting} starting · ${c.exiting} exiting · ${c.dead} dead`;
}

function renderProgress(s) {
  if (!s.progress.length) return;
  $("progress").replaceChildren(...s.progress.slice().reverse().slice(0, 6).map((p) => {
    const pct = p.total ? Math.floor((100 * p.done) / p.total) : 100;
    const eta = p.finished ? "done in " + secs(p.elapsed_s) : p.eta_s == null ? "ETA –" : "ETA " + secs(p.eta_s);
    return el("div", { class: "map" + (p.finished ? " finished" : ""), "data-id": p.id, "data-pct": pct },
      el("div", { class: "line" },
        el("span", {}, `${p.label} #${p.id}: ${p.done} / ${p.total}`),
        el("span", { class: "pct" }, pct + " %")),
      el("div", { class: "bar" }, el("div", { style: `width:${pct}%` })),
      el("div", { class: "line note" },
        el("span", {}, `${p.rate.toFixed(1)} items/s · ${eta}`),
        el("span", {}, `${p.errors} errors · ${p.retries} retries`)));
  }));
}

function renderTasks(s) {
  const svg = $("timeline");
  const pids = s.workers.map((w) => w.pid);
  const rowH = 14, width = svg.clientWidth || 600, now = s.generated_ms, span = 30000;
  svg.setAttribute("height", Math.max(20, pids.length * rowH + 4));
  const ns = "http://www.w3.org/2000/svg";
  const shapes = [];
  pids.forEach((pid, i) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", 2); t.setAttribute("y", i * rowH + 11);
    t.setAttribute("fill", "#8a96a3"); t.setAttribute("font-size", "10");
    t.textContent = pid;
    shapes.push(t);
  });
  for (const k of s.tasks) {
    const row = pids.indexOf(k.pid);
    if (row < 0 || k.end_ms < now - span) continue;
    const x0 = 24 + ((Math.max(k.start_ms, now - span) - (now - span)) / span) * (width - 28);
    const x1 = 24 + ((k.end_ms - (now - span)) / span) * (width - 28);
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", x0); r.setAttribute("y", row * rowH + 2);
    r.setAttribute("width", Math.max(1.5, x1 - x0)); r.setAttribute("height", rowH - 4);
    r.setAttribute("fill", k.ok ? "#3fb950" : "#f85149");
    const title = document.createElementNS(ns, "title");
    title.textContent = `${short(k.function)} on ${k.pid}: ${k.end_ms - k.start_ms} ms`;
    r.append(title);
    shapes.push(r);
  }
  svg.replaceChildren(...shapes);
  $("tasks").replaceChildren(...s.tasks.slice(-40).reverse().map((k) =>
    el("li", { class: k.ok ? "ok" : "failed" },
      `${new Date(k.end_ms).toLocaleTimeString()} worker ${k.pid} ${short(k.function)} ${k.end_ms - k.start_ms} ms ${k.ok ? "ok" : "FAILED"}`)));
}

function renderObjects(s) {
  $("objects").tBodies[0].replaceChildren(...s.objects.filter((o) => o.count > 0 || o.kind === "remote_values").map((o) =>
    el("tr", {}, td(o.owner), td(o.kind), td(o.count, "num"), td(o.bytes == null ? "–" : bytes(o.bytes), "num"), td(o.detail))));
}

function renderErrors(s) {
  $("errors").replaceChildren(...s.errors.slice().reverse().slice(0, 30).map((e) =>
    el("li", {},
      el("span", { class: "msg" }, `${e.error.kind} on worker ${e.error.pid} in ${short(e.error.function)}: ${e.error.message}`),
      el("span", { class: "note" }, ` (${e.source}, ${new Date(e.at_ms).toLocaleTimeString()})`),
      e.error.context ? el("pre", {}, e.error.context) : "")));
}

function renderStderr(s) {
  $("stderr").replaceChildren(...s.workers.filter((w) => w.stderr.length).map((w) =>
    el("div", {}, el("div", { class: "note" }, `worker ${w.pid}`), el("pre", { "data-pid": w.pid }, w.stderr.join("\n")))));
}

function render(s) {
  document.body.dataset.seq = s.seq;
  renderWorkers(s);
  renderProgress(s);
  renderTasks(s);
  renderObjects(s);
  renderErrors(s);
  renderStderr(s);
}

function connect() {
  const es = new EventSource("api/events" + q);
  es.addEventListener("status", (ev) => {
    $("conn").textContent = "live";
    $("conn").className = "conn on";
    render(JSON.parse(ev.data));
  });
  es.onerror = () => {
    $("conn").textContent = "reconnecting";
    $("conn").className = "conn off";
  };
}
connect();
