// autopeft web UI: #/ lists the studies, #/study/NAME shows one; polls while a study runs.
"use strict";

const POLL_MS = 3000;
let pollTimer = null;
let current = null; // {name, summary, trials, selected}

function token() { return localStorage.getItem("autopeft-token") || ""; }

async function api(path, asText) {
  const headers = token() ? { Authorization: "Bearer " + token() } : {};
  const response = await fetch(path, { headers });
  if (response.status === 401) {
    document.getElementById("token-form").hidden = false;
    throw new Error("this server needs a token: paste one above (autopeft token create --scope read)");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(`${path}: ${response.status} ${detail}`);
  }
  return asText ? response.text() : response.json();
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fmt(name, value) {
  if (value === null || value === undefined) return "-";
  if (name === "trainable_params") return Math.round(value).toLocaleString("en-US");
  if (name === "peak_memory_mb") return value.toFixed(1);
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  return String(value);
}

function showError(message) {
  const node = document.getElementById("error");
  node.textContent = message || "";
  node.hidden = !message;
}

function primary(objectives) {
  return objectives.find((o) => o.direction === "maximize") || objectives[0];
}

// -- study list ----------------------------------------------------------------------------------
async function showList() {
  document.getElementById("list-page").hidden = false;
  document.getElementById("study-page").hidden = true;
  document.getElementById("crumb").textContent = "";
  const studies = await api("/api/studies");
  const body = document.querySelector("#studies tbody");
  body.replaceChildren();
  for (const s of studies) {
    const row = el("tr");
    const link = el("a", s.name);
    link.href = "#/study/" + encodeURIComponent(s.name);
    const name = el("td", null, "text");
    name.append(link);
    const metric = primary(s.objectives).name;
    row.append(name, el("td", s.state, "text state-" + s.state),
      el("td", `${s.counts.complete} / ${s.target}`), el("td", s.front_size),
      el("td", s.best[metric] === undefined ? "-" : `${metric} ${fmt(metric, s.best[metric])}`),
      el("td", fmt("hv", s.hypervolume)), el("td", s.model, "text"), el("td", s.dataset, "text"));
    body.append(row);
  }
  return false;
}

// -- one study -----------------------------------------------------------------------------------
// The page draws the front, the references and running trials, and at most maxPoints() of the
// other trials (the server picks them evenly over trial numbers); it fetches them again only
// when the summary's version moved. The insight panel and the curves load beside the poll.
function maxPoints() {
  const kept = localStorage.getItem("autopeft-max-points"); // a smaller cap, for tests
  return kept !== null && /^[0-9]+$/.test(kept) ? Number(kept) : 500;
}

async function showStudy(name) {
  document.getElementById("list-page").hidden = true;
  document.getElementById("study-page").hidden = false;
  document.getElementById("crumb").textContent = "/ " + name;
  if (!current || current.name !== name) current = { name, selected: null, version: null };
  const enc = encodeURIComponent(name);
  // the summary and the trials at once; once the page has a version of the study, the server
  // answers {unchanged: true} while it is still the current one
  const unless = current.version === null ? "" : `&unless=${encodeURIComponent(current.version)}`;
  const pending = api(`/api/studies/${enc}/sample?limit=${maxPoints()}${unless}`);
  pending.catch(() => {}); // awaited below; the summary's error is the one to show
  const summary = await api(`/api/studies/${enc}`);
  current.summary = summary;
  renderSummary(summary);
  const sample = await pending;
  if (!sample.unchanged) {
    performance.mark("autopeft-fetched");
    Object.assign(current, { sample, trials: sample.trials, version: sample.version });
    renderFront(summary, sample.trials);
    renderShown(sample);
    performance.mark("autopeft-front");
    await nextFrame(); // the front on screen before the table and the other plots are built
    renderHypervolume(sample.hypervolume);
    renderTrials(summary, sample.trials);
    performance.mark("autopeft-table");
    if (window.autopeftInsight) window.autopeftInsight.draw(current);
    performance.mark("autopeft-drawn");
    if (current.selected !== null) await select(current.selected, false);
  }
  // beside the poll: slow to make the first time per version of a large study on the server
  if (window.autopeftInsight) window.autopeftInsight.study(current).catch((e) => showError(e.message));
  if (window.autopeftCurves) window.autopeftCurves.study(current).catch((e) => showError(e.message));
  return summary.state === "running";
}

// after the browser has painted (or 100 ms: a background tab paints no frames)
function nextFrame() {
  return new Promise((resolve) => {
    requestAnimationFrame(() => setTimeout(resolve, 0));
    setTimeout(resolve, 100);
  });
}

function renderShown(sample) {
  const node = document.getElementById("shown");
  node.hidden = sample.shown === sample.total;
  const n = (v) => v.toLocaleString("en-US");
  const sampled = sample.shown - (sample.total - sample.others);
  node.textContent = node.hidden ? "" : `${n(sample.shown)} of ${n(sample.total)} trials shown: ` +
    `the Pareto front, the references, running trials and ${n(sampled)} of the other ` +
    `${n(sample.others)} evenly over trial numbers.`;
}

function renderSummary(s) {
  document.getElementById("study-title").textContent = s.name;
  const best = Object.entries(s.best).map(([k, v]) => `${k} ${fmt(k, v)}`).join(", ") || "-";
  const eta = s.eta_seconds === null ? "" : ` | ETA ${Math.round(s.eta_seconds)} s`;
  const counts = Object.entries(s.counts).map(([k, v]) => `${k} ${v}`).join(", ");
  const failure = document.getElementById("study-error");
  failure.hidden = !(s.state === "failed" && s.error);
  failure.textContent = s.error ? `driver failed: ${s.error}` : "";
  document.getElementById("study-summary").textContent =
    `${s.state} | ${counts} (target ${s.target}) | front ${s.front_size} | best ${best} | ` +
    `hypervolume ${fmt("hv", s.hypervolume)}${eta} | ${s.model} on ${s.dataset}, sampler ${s.sampler}`;
}

function hoverText(t, objectives) {
  const values = objectives.map((o) => `${o.name}: ${fmt(o.name, t[o.name])}`).join("<br>");
  return `trial ${t.trial} (${t.method})<br>${values}<br>placement: ${escapeHtml(t.placement)}`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

function renderFront(s, trials) {
  const y = primary(s.objectives);
  const x = s.objectives.find((o) => o.name === "trainable_params") || s.objectives.find((o) => o !== y);
  const done = trials.filter((t) => t.state === "COMPLETE" && t[y.name] !== null && t[x.name] !== null);
  const trace = (rows, label, color, size) => ({
    x: rows.map((t) => t[x.name]), y: rows.map((t) => t[y.name]), customdata: rows.map((t) => t.trial),
    text: rows.map((t) => hoverText(t, s.objectives)), hovertemplate: "%{text}<extra></extra>",
    mode: "markers", type: "scatter", name: label, marker: { color, size },
  });
  const searched = done.filter((t) => !t.reference);
  const front = searched.filter((t) => t.on_front).sort((a, b) => a[x.name] - b[x.name]);
  const refs = done.filter((t) => t.reference);
  const data = [trace(searched.filter((t) => !t.on_front), "dominated", "#b0b0b0", 8),
    trace(front, "Pareto front", "#c0392b", 12)];
  if (refs.length) {
    // references (the spec's defaults): labelled stars beside the front, never in it
    data.push({ ...trace(refs, "references", "#1f4e99", 16), mode: "markers+text",
      marker: { color: "#1f4e99", size: 16, symbol: "star" }, textposition: "bottom center",
      text: refs.map((t) => t.reference), hovertext: refs.map((t) => hoverText(t, s.objectives)),
      hovertemplate: "%{hovertext}<extra></extra>" });
  }
  const layout = {
    title: { text: `Pareto front: ${y.name} vs ${x.name}` }, hovermode: "closest",
    xaxis: { title: { text: x.name }, type: x.name === "trainable_params" ? "log" : "linear" },
    yaxis: { title: { text: y.name } }, margin: { t: 40, r: 10 }, legend: { orientation: "h" },
  };
  const node = document.getElementById("front");
  Plotly.react(node, data, layout, { displaylogo: false, responsive: true });
  if (!node.dataset.bound) {
    node.on("plotly_click", (event) => select(event.points[0].customdata, true));
    node.dataset.bound = "1";
  }
}

function renderHypervolume(steps) {
  // [[trial, hypervolume]] where it changed: the same step line, a marker per improvement
  Plotly.react(document.getElementById("hv"), [{
    x: steps.map((p) => p[0]), y: steps.map((p) => p[1]), mode: "lines+markers", type: "scatter",
    line: { shape: "hv" }, hovertemplate: "after trial %{x}: %{y:.4f}<extra></extra>",
  }], {
    title: { text: "Hypervolume (normalised)" }, xaxis: { title: { text: "trial" } },
    yaxis: { title: { text: "hypervolume" }, rangemode: "tozero" }, margin: { t: 40, r: 10 },
  }, { displaylogo: false, responsive: true });
}

function renderTrials(s, trials) {
  const names = s.objectives.map((o) => o.name);
  const head = el("tr");
  for (const h of ["#", "state", ...names, "device", "method", "placement"]) head.append(el("th", h, h === "placement" ? "text" : ""));
  document.querySelector("#trials thead").replaceChildren(head);
  const body = document.querySelector("#trials tbody");
  body.replaceChildren();
  for (const t of trials) {
    const row = el("tr", null, "clickable" + (t.on_front ? " front" : "") + (t.trial === current.selected ? " chosen" : ""));
    row.dataset.trial = t.trial;
    const rung = t.rung === undefined || t.rung === null ? "" : ` (rung ${t.rung}, ${t.steps} steps)`;
    const ref = t.reference ? ` (reference ${t.reference})` : "";
    const state = (t.interrupted ? "INTERRUPTED" : t.state) + rung + ref;
    row.append(el("td", t.trial), el("td", state, "text"), ...names.map((n) => el("td", fmt(n, t[n]))),
      el("td", t.device || "-", "text"), el("td", t.method, "text"), el("td", t.placement, "text"));
    if (t.fail_reason) row.title = t.fail_reason;
    row.addEventListener("click", (event) => (event.shiftKey && window.autopeftInsight
      ? window.autopeftInsight.compare(current, t.trial) : select(t.trial, true)));
    body.append(row);
  }
}

async function select(number, scroll) {
  current.selected = number;
  for (const row of document.querySelectorAll("#trials tbody tr")) {
    row.classList.toggle("chosen", Number(row.dataset.trial) === number);
  }
  const enc = encodeURIComponent(current.name);
  const detail = await api(`/api/studies/${enc}/trials/${number}`);
  document.getElementById("selected-none").hidden = true;
  document.getElementById("selected-body").hidden = false;
  const values = current.summary.objectives.map((o) => `${o.name} ${fmt(o.name, detail[o.name])}`).join(", ");
  document.getElementById("selected-title").textContent =
    `trial ${number} (${detail.state}, ${detail.method}${detail.device ? ", " + detail.device : ""}): ` +
    `${values}; placement ${detail.placement}`;
  document.getElementById("config").textContent = JSON.stringify(detail.peft_config, null, 2);
  const href = `/api/studies/${enc}/export?trial=${number}`;
  const link = document.getElementById("download");
  link.href = href;
  link.onclick = token() ? (event) => { event.preventDefault(); download(href); } : null;
  document.getElementById("snippet").textContent = [
    "import autopeft",
    "",
    `client = autopeft.Client(${JSON.stringify(location.origin)}, token="<read token>")`,
    `config = client.load_peft_config(${JSON.stringify(current.name)}, trial=${number})`,
    "# model = peft.get_peft_model(base_model, config)",
  ].join("\n");
  if (window.autopeftInsight) await window.autopeftInsight.select(current, number);
  if (window.autopeftCurves) await window.autopeftCurves.select(current, number);
  if (scroll) document.getElementById("selected").scrollIntoView({ block: "nearest" });
}

async function download(href) {
  const text = await api(href, true);
  const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const a = el("a");
  a.href = url;
  a.download = "adapter_config.json";
  a.click();
  URL.revokeObjectURL(url);
}

// -- routing and polling -------------------------------------------------------------------------
async function route() {
  clearTimeout(pollTimer);
  const match = location.hash.match(/^#\/study\/(.+)$/);
  try {
    const live = match ? await showStudy(decodeURIComponent(match[1])) : await showList();
    showError("");
    if (live || !match) pollTimer = setTimeout(route, POLL_MS);
  } catch (error) {
    showError(error.message);
    pollTimer = setTimeout(route, POLL_MS * 3);
  }
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("autopeft-token", document.getElementById("token").value.trim());
  document.getElementById("token-form").hidden = true;
  route();
});
window.addEventListener("hashchange", route);
route();
