// Causeway dashboard: polls state.json every second and redraws. Plain
// JavaScript, no build step (internal/dashboard).
"use strict";

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const ago = (t, now) => {
  if (!t) return "never";
  const s = Math.max(0, Math.round((now - Date.parse(t)) / 1000));
  return s < 90 ? s + "s ago" : Math.round(s / 60) + "m ago";
};
const until = (t, now) => {
  if (!t) return "–";
  const h = (Date.parse(t) - now) / 3600e3;
  if (h < 0) return '<span class="bad">expired</span>';
  const txt = h < 48 ? h.toFixed(1) + "h" : Math.round(h / 24) + "d";
  return h < 24 ? '<span class="warn">in ' + txt + "</span>" : "in " + txt;
};

function renderRegions(st) {
  const regions = new Map();
  for (const c of st.clusters) {
    const r = c.region || "(region unknown)";
    if (!regions.has(r)) regions.set(r, []);
    regions.get(r).push(c);
  }
  let html = "";
  for (const [region, clusters] of regions) {
    html += `<div class="region" data-region="${esc(region)}"><div class="title">${esc(region)}</div><div class="clusters">`;
    for (const c of clusters) {
      const state = !c.reachable ? '<span class="bad">unreachable</span>' : c.ready ? '<span class="good">ready</span>' : '<span class="warn">no model yet</span>';
      html += `<div class="cluster${c.reachable ? "" : " down"}" data-cluster="${esc(c.name)}" data-reachable="${c.reachable}">`;
      html += `<div class="title"><span>${esc(c.name)}</span>${state}</div>`;
      html += `<div class="muted">${esc(c.trust_domain)} · ${c.proxies} proxies · <a href="${esc(c.admin)}/status">status</a></div>`;
      if (c.error) html += `<div class="err">${esc(c.error)}</div>`;
      for (const p of c.problems || []) html += `<div class="err">${esc(p)}</div>`;
      html += `<div class="zones">`;
      for (const z of c.zones || []) {
        html += `<div class="zone" data-zone="${esc(z)}"><div class="name">${esc(z)}</div>`;
        for (const s of st.services) {
          for (const l of s.locations) {
            if (l.cluster !== c.name || l.zone !== z) continue;
            const cls = l.ready === 0 ? "none" : l.ready < l.endpoints ? "partial" : "ok";
            html += `<div class="loc ${cls}" data-loc="${esc(s.name)}/${esc(c.name)}/${esc(z)}" data-ready="${l.ready}" data-endpoints="${l.endpoints}">` +
              `<span>${esc(s.name)}${s.exported ? " ⇄" : ""}</span><span>${l.ready}/${l.endpoints}</span></div>`;
          }
        }
        const pods = (st.pods || []).filter((p) => p.cluster === c.name && p.zone === z);
        if (pods.length) {
          html += `<div class="pods">` + pods.map((p) =>
            `<span class="dot${p.up ? "" : " down"}" data-pod="${esc(c.name)}/${esc(p.pod)}" data-up="${p.up}" title="${esc(p.pod)}${p.up ? "" : ": " + esc(p.error)}"></span>`).join("") + `</div>`;
        }
        html += `</div>`;
      }
      html += `</div></div>`;
    }
    html += `</div></div>`;
  }
  document.getElementById("regions").innerHTML = html;
}

function renderFlows(st) {
  const max = Math.max(1, ...st.flows.map((f) => f.rps));
  document.querySelector("#flows tbody").innerHTML = st.flows.map((f) =>
    `<tr class="${f.rps > 0 ? "" : "idle"}" data-flow="${esc(f.from)}>${esc(f.to)}/${esc(f.to_zone)}" data-rps="${f.rps.toFixed(1)}" data-failed-rps="${f.failed_rps.toFixed(1)}">` +
    `<td>${esc(f.from)}</td><td>${esc(f.to)}</td><td>${esc(f.to_zone)}</td>` +
    `<td class="num">${f.rps.toFixed(1)}</td><td class="num ${f.failed_rps > 0 ? "bad" : ""}">${f.failed_rps.toFixed(1)}</td>` +
    `<td class="barcell"><div class="bar" style="width:${(100 * f.rps / max).toFixed(1)}%"></div></td>` +
    `<td class="num">${Math.round(f.requests)}</td><td class="num ${f.failed > 0 ? "bad" : ""}">${Math.round(f.failed)}</td></tr>`).join("") ||
    `<tr class="idle"><td colspan="8">no requests seen yet</td></tr>`;
  document.getElementById("window").textContent = st.window > 0 ? `(rates over the last ${st.window.toFixed(1)}s)` : "";
}

function renderFederation(st, now) {
  document.querySelector("#links tbody").innerHTML = st.links.map((l) =>
    `<tr data-link="${esc(l.from)}>${esc(l.to)}" data-state="${esc(l.state)}"><td>${esc(l.from)}</td><td>${esc(l.to)}</td>` +
    `<td class="${l.healthy ? "good" : "bad"}" title="${esc(l.last_error)}">${esc(l.state)}</td>` +
    `<td class="num">${l.services}</td><td class="num">${l.endpoints}</td><td class="num">${l.revision}</td><td>${ago(l.last_sync, now)}</td></tr>`).join("") ||
    `<tr class="idle"><td colspan="7">no links</td></tr>`;
  document.querySelector("#trust tbody").innerHTML = st.trust.map((t) =>
    `<tr data-trust="${esc(t.holder)}>${esc(t.trust_domain)}"><td>${esc(t.holder)}</td><td>${esc(t.trust_domain)}</td>` +
    `<td class="${t.healthy ? "good" : "bad"}" title="${esc(t.last_error)}">${t.healthy ? "fresh" : "stale"}</td>` +
    `<td class="num">${t.sequence ?? "–"}</td><td>${until(t.expiry, now)}</td><td>${ago(t.last_refresh, now)}</td></tr>`).join("") ||
    `<tr class="idle"><td colspan="6">no peer bundles</td></tr>`;
}

function render(st) {
  const now = Date.parse(st.time);
  renderRegions(st);
  renderFlows(st);
  renderFederation(st, now);
  const up = st.clusters.filter((c) => c.reachable).length;
  const rps = st.flows.reduce((a, f) => a + f.rps, 0);
  const failed = st.flows.reduce((a, f) => a + f.failed_rps, 0);
  document.getElementById("summary").innerHTML =
    `${up}/${st.clusters.length} control planes · ${rps.toFixed(0)} req/s · <span class="${failed > 0 ? "bad" : ""}">${failed.toFixed(1)} failed/s</span>`;
  document.getElementById("updated").textContent = "updated " + new Date(now).toLocaleTimeString();
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

async function poll() {
  try {
    const r = await fetch("state.json", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    render(await r.json());
  } catch (e) {
    document.getElementById("updated").textContent = "not updating: " + e.message;
  }
  setTimeout(poll, 1000);
}
poll();
