// The migration dashboard: polls /_gateway/api/dashboard every 2 s and renders it. No framework:
// elements are built with textContent only (never innerHTML), so nothing a response carries
// (a mismatch's values, a route's path) can become markup; plots are inline SVG.
"use strict";

const API = "/_gateway/api/dashboard";
const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const STATE_NAMES = {legacy: "legacy only", shadow: "shadow", canary: "canary", new: "new", retired: "retired"};
const WINDOW_NAMES = {"5m": "last 5 min", "1h": "last hour", "24h": "last 24 h"};

let killSwitch = false;
let flagsVersion = null;
const dirtyFlags = new Set();

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function replace(id, ...children) {
  document.getElementById(id).replaceChildren(...children);
}

function percent(share) {
  return share === null || share === undefined ? "-" : `${(share * 100).toFixed(1)}%`;
}

function ms(seconds) {
  return seconds === null || seconds === undefined ? "-" : `${(seconds * 1000).toFixed(1)}`;
}

function rate(perSecond) {
  return perSecond === null || perSecond === undefined ? "-" : perSecond.toFixed(2);
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

// -- calls ---------------------------------------------------------------------------------------

async function send(method, url, body) {
  // The custom header and the JSON body are what gateway/csrf.py asks of a cookie-signed change.
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-Gateway-CSRF": "1"},
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = (answer.error && answer.error.message) || answer.message || response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return answer;
}

async function refresh() {
  try {
    const response = await fetch(API, {credentials: "same-origin", cache: "no-store"});
    if (!response.ok) {
      showError(response.status === 401 ? "Not signed in (401): sign in to the application first."
        : response.status === 403 ? "Not an admin (403)." : `The gateway answered ${response.status}.`);
      return;
    }
    render(await response.json());
    showError("");
  } catch (error) {
    showError(`Cannot reach the gateway: ${error.message}`);
  }
}

// -- panels --------------------------------------------------------------------------------------

function render(data) {
  document.getElementById("who").textContent = data.user ? `signed in as ${data.user}` : "";
  document.getElementById("updated").textContent =
    `updated ${new Date(data.generated * 1000).toLocaleTimeString()} - ${data.workers.length} worker(s)`;
  renderKillSwitch(data.flags.kill_switch);
  renderProgress(data.status);
  renderFlags(data.flags);
  renderRoutes(data.routes);
  renderRollouts(data.rollouts);
  renderShadow(data.shadow);
  renderResilience(data.resilience);
  renderPlots(data.series);
}

function renderKillSwitch(enabled) {
  killSwitch = enabled;
  document.getElementById("killed").hidden = !enabled;
  const button = document.getElementById("kill-switch");
  button.textContent = enabled ? "Lift the kill switch" : "Kill switch: send everything to legacy";
  button.dataset.enabled = String(enabled);
}

function renderProgress(status) {
  replace("states", ...Object.entries(status.states).map(([state, count]) =>
    el("div", {class: `tile state-${state}`, "data-state": state},
      el("strong", {text: count}), el("span", {text: STATE_NAMES[state] || state}))));
  replace("shares", ...Object.entries(status.windows).map(([name, window]) =>
    el("div", {class: "tile share", "data-window": name},
      el("strong", {text: percent(window.share_new)}),
      el("span", {text: `on the new side, ${WINDOW_NAMES[name] || name}`}),
      el("small", {text: `${window.requests} requests`}))));
}

function renderFlags(flags) {
  if (flags.version === flagsVersion && dirtyFlags.size > 0) return;  // keep edits in progress
  if (flags.version === flagsVersion && document.querySelector("#flag-rows tr")) return;
  flagsVersion = flags.version;
  replace("flag-rows", ...Object.entries(flags.flags).map(([name, spec]) => flagRow(name, spec)));
}

function flagRow(name, spec) {
  const mode = el("select", {name: "mode"}, ...["legacy", "shadow", "canary", "new"].map((m) =>
    el("option", {value: m, selected: m === spec.mode}, m)));
  const percentage = el("input", {name: "percentage", type: "number", min: 0, max: 100,
    value: spec.percentage});
  const allow = el("input", {name: "allow_subjects", type: "text", placeholder: "alice, bob",
    value: spec.allow_subjects.join(", ")});
  const apply = el("button", {type: "button", class: "apply"}, "Apply");
  const note = el("span", {class: "note"});
  const row = el("tr", {"data-flag": name}, el("td", {text: name}), el("td", {}, mode),
    el("td", {}, percentage), el("td", {}, allow), el("td", {text: spec.source}),
    el("td", {}, apply, note));
  for (const input of [mode, percentage, allow]) {
    input.addEventListener("input", () => dirtyFlags.add(name));
  }
  apply.addEventListener("click", async () => {
    const change = {
      mode: mode.value,
      percentage: Number(percentage.value),
      allow_subjects: allow.value.split(",").map((s) => s.trim()).filter(Boolean),
    };
    try {
      await send("PUT", `/_gateway/api/flags/${encodeURIComponent(name)}`, change);
      dirtyFlags.delete(name);
      flagsVersion = null;
      note.textContent = "saved";
      await refresh();
    } catch (error) {
      note.textContent = "";
      showError(`Could not change ${name}: ${error.message}`);
    }
  });
  return row;
}

// Rollouts: each one's step, state and why; its buttons call the admin API (gateway/rollout/api.py).
const ROLLOUTS = "/_gateway/api/rollouts";
const ROLLOUT_ACTIONS = {running: ["pause", "abort"], paused: ["resume", "abort"], "rolled-back": ["resume", "abort"]};
const ACTION_NAMES = {pause: "Pause", resume: "Resume", abort: "Abort"};

function stepText(rollout) {
  const current = rollout.current === "shadow" ? "shadow" : `${rollout.current}%`;
  return `${rollout.step}/${rollout.steps.length}: ${current}`;
}

function verdictText(rollout) {
  const verdict = rollout.last_verdict;
  if (rollout.reason) return rollout.reason;
  return verdict ? verdict.reason : "no verdict yet";
}

async function rolloutCall(what, url, body, question) {
  if (question && !window.confirm(question)) return;
  try {
    await send("POST", url, body);
    await refresh();
  } catch (error) {
    showError(`Could not ${what}: ${error.message}`);
  }
}

function rolloutRow(rollout) {
  const buttons = (ROLLOUT_ACTIONS[rollout.status] || []).map((action) => {
    const button = el("button", {type: "button", class: action === "abort" ? "danger" : "", "data-action": action},
      ACTION_NAMES[action]);
    const question = action === "abort"
      ? `Abort the rollout of ${rollout.route}? Its flag goes back to legacy for everyone.` : null;
    button.addEventListener("click", () => rolloutCall(`${action} the rollout of ${rollout.flag}`,
      `${ROLLOUTS}/${encodeURIComponent(rollout.flag)}/${action}`, {}, question));
    return button;
  });
  return el("tr", {"data-rollout": rollout.flag, class: `rollout-${rollout.status}`},
    el("td", {class: "path", text: rollout.route}),
    el("td", {text: rollout.flag}),
    el("td", {class: "step", text: stepText(rollout)}),
    el("td", {}, el("span", {class: `badge rollout-${rollout.status}`, "data-status": rollout.status, text: rollout.status})),
    el("td", {class: "verdict", text: verdictText(rollout)}),
    el("td", {}, ...buttons));
}

function renderRollouts(view) {
  replace("rollout-rows", ...(view.rollouts.length ? view.rollouts.map(rolloutRow)
    : [el("tr", {}, el("td", {colspan: 6, class: "muted", text: "No rollout."}))]));
  replace("rollout-starts", ...view.startable.map((start) => {
    const button = el("button", {type: "button", class: "start", "data-start": start.route},
      `Start a rollout of ${start.route}`);
    const question = `Start a rollout of ${start.route}? Flag ${start.flag} moves through `
      + `${start.steps.join(", ")} by itself, guarded by the new side's errors and latency.`;
    button.addEventListener("click", () => rolloutCall(`start a rollout of ${start.route}`,
      ROLLOUTS, {route: start.route}, question));
    return button;
  }));
}

function sideCells(side) {
  return [
    el("td", {class: "num", text: rate(side.rate)}),
    el("td", {class: "num", text: percent(side.error_rate)}),
    el("td", {class: "num", text: ms(side.p50)}),
    el("td", {class: "num", text: ms(side.p99)}),
  ];
}

function renderRoutes(routes) {
  replace("route-rows", ...routes.map((route) => {
    const flag = route.flag ? `${route.flag} (${route.mode}${route.mode === "canary" ? ` ${route.percentage}%` : ""})` : "-";
    return el("tr", {"data-route": `${route.methods.join(",")} ${route.path}`, class: `state-${route.state || "unrouted"}`},
      el("td", {class: "path", text: route.path}),
      el("td", {text: route.methods.join(", ")}),
      el("td", {}, el("span", {class: `badge state-${route.state || "unrouted"}`, text: STATE_NAMES[route.state] || route.status})),
      el("td", {text: route.served_by || "-"}),
      el("td", {text: flag}),
      ...sideCells(route.sides.legacy),
      ...sideCells(route.sides.new));
  }));
}

function renderShadow(shadow) {
  const rows = Object.entries(shadow.routes);
  replace("shadow-rows", ...(rows.length ? rows.map(([route, counts]) =>
    el("tr", {"data-shadow-route": route}, el("td", {class: "path", text: route}),
      el("td", {class: "num", text: counts.match}), el("td", {class: "num", text: counts.mismatch}),
      el("td", {class: "num", text: counts.noisy}), el("td", {class: "num", text: counts.candidate_error}),
      el("td", {class: "num", text: counts.skipped})))
    : [el("tr", {}, el("td", {colspan: 6, class: "muted", text: "No shadowed requests yet."}))]));
  replace("mismatches", ...(shadow.recent.length ? shadow.recent.map(mismatchView)
    : [el("p", {class: "muted", text: "No mismatch."})]));
}

function mismatchView(mismatch) {
  const when = new Date(mismatch.at * 1000).toLocaleTimeString();
  return el("div", {class: "mismatch", "data-path": mismatch.path},
    el("p", {},
      el("strong", {text: `${mismatch.method} ${mismatch.path}`}),
      ` legacy ${mismatch.legacy_status} vs ${mismatch.service} ${mismatch.new_status} `,
      el("span", {class: "count", text: mismatch.count > 1 ? `${mismatch.count} times, latest at ${when}` : `at ${when}`}),
      " ", el("small", {class: "muted", text: `request ${mismatch.request_id}`})),
    el("table", {class: "diff"},
      el("thead", {}, el("tr", {}, el("th", {text: "JSON Pointer"}), el("th", {text: "difference"}),
        el("th", {text: "legacy"}), el("th", {text: "new"}))),
      el("tbody", {}, ...mismatch.differences.map((d) => el("tr", {},
        el("td", {class: "pointer", text: d.pointer || "(root)"}), el("td", {text: d.kind}),
        el("td", {class: "value legacy", text: d.legacy === null ? "(absent)" : d.legacy}),
        el("td", {class: "value new", text: d.new === null ? "(absent)" : d.new}))))));
}

function renderResilience(resilience) {
  replace("breakers", el("h3", {text: "Breakers"}), resilience.breakers.length
    ? el("ul", {}, ...resilience.breakers.map((b) =>
      el("li", {class: b.open ? "open" : "closed", "data-breaker": b.route},
        `${b.route}: ${b.open ? "OPEN (legacy serves)" : "closed"}`)))
    : el("p", {class: "muted", text: "No guarded route."}));
  replace("fallbacks", el("h3", {text: "Fallbacks since start"}), resilience.fallbacks.length
    ? el("ul", {}, ...resilience.fallbacks.map((f) => el("li", {}, `${f.route}: ${f.count} (${f.cause})`)))
    : el("p", {class: "muted", text: "No fallback."}));
}

// -- plots ---------------------------------------------------------------------------------------

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function tick(value) {
  return value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(1) : value.toPrecision(2);
}

function linePlot(series, unit) {
  // series: [{name, class, points: [[t, y], ...]}]; y null points are skipped.
  const width = 520, height = 180, left = 48, bottom = 22, top = 8, right = 8;
  const plot = svg("svg", {viewBox: `0 0 ${width} ${height}`, class: "plot", role: "img"});
  const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null));
  if (all.length < 1) {
    const text = svg("text", {x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty"});
    text.textContent = "waiting for samples";
    plot.append(text);
    return plot;
  }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const yMax = Math.max(...all.map((p) => p[1]), 1e-9) * 1.1;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
  const y = (v) => height - bottom - (v / yMax) * (height - bottom - top);
  plot.append(svg("line", {x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: "axis"}));
  plot.append(svg("line", {x1: left, y1: top, x2: left, y2: height - bottom, class: "axis"}));
  for (const fraction of [0.5, 1]) {
    const label = svg("text", {x: left - 4, y: y(yMax * fraction / 1.1) + 4, "text-anchor": "end", class: "tick"});
    label.textContent = `${tick(yMax * fraction / 1.1)}${unit}`;
    plot.append(label);
  }
  const minutes = svg("text", {x: width - right, y: height - 6, "text-anchor": "end", class: "tick"});
  minutes.textContent = t1 - t0 < 120 ? `${Math.round(t1 - t0)} s` : `${Math.round((t1 - t0) / 60)} min`;
  plot.append(minutes);
  series.forEach((s, index) => {
    const points = s.points.filter((p) => p[1] !== null).map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
    if (points.length) plot.append(svg("polyline", {points: points.join(" "), class: `line ${s.class}`}));
    const key = svg("text", {x: left + 8 + index * 110, y: top + 12, class: `key ${s.class}`});
    key.textContent = s.name;
    plot.append(key);
  });
  return plot;
}

function renderPlots(series) {
  const points = (side, field, scale) => series.map((p) => [p.at, p[side][field] === null ? null : p[side][field] * scale]);
  replace("plot-split", linePlot([
    {name: "legacy", class: "legacy", points: points("legacy", "rate", 1)},
    {name: "new", class: "new", points: points("new", "rate", 1)},
  ], "/s"));
  replace("plot-latency", linePlot([
    {name: "legacy p99", class: "legacy", points: points("legacy", "p99", 1000)},
    {name: "new p99", class: "new", points: points("new", "p99", 1000)},
  ], "ms"));
}

// -- start ---------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("kill-switch").addEventListener("click", async () => {
    const enabling = !killSwitch;
    const question = enabling
      ? "Throw the kill switch? Every flagged route will be served by legacy, in every worker."
      : "Lift the kill switch? Flagged routes go back to their flags' modes.";
    if (!window.confirm(question)) return;
    try {
      await send("PUT", "/_gateway/api/kill-switch", {enabled: enabling});
      await refresh();
    } catch (error) {
      showError(`Could not change the kill switch: ${error.message}`);
    }
  });
  refresh();
  window.setInterval(refresh, POLL_MS);
});
