// autopeft web UI, what the search learned: health checks, the front in the memory projection,
// placement heatmaps (the front's usage, the selected trial, a second trial to compare),
// importance per objective and parallel coordinates. Uses app.js's api/el/fmt/primary helpers.
"use strict";

window.autopeftInsight = (function () {
  let insightKey = null; // study name + version of the last /insight fetch (or the one in flight)
  let compared = null;
  const config = { displaylogo: false, responsive: true };

  // the parallel coordinates once they come into view (WebGL: seconds to build without a GPU,
  // which would keep the page busy right after it drew the front)
  let parcoordsSeen = false, parcoordsPending = null, parcoordsObserver = null;

  function renderParcoordsWhenSeen(s, trials) {
    parcoordsPending = [s, trials];
    if (!("IntersectionObserver" in window)) {
      renderParcoords(s, trials);
      return;
    }
    if (!parcoordsObserver) {
      parcoordsObserver = new IntersectionObserver((entries) => {
        parcoordsSeen = entries[entries.length - 1].isIntersecting;
        if (parcoordsSeen && parcoordsPending) {
          const [summary, rows] = parcoordsPending;
          parcoordsPending = null;
          renderParcoords(summary, rows);
        }
      }, { rootMargin: "200px" });
      parcoordsObserver.observe(document.getElementById("parcoords"));
    } else if (parcoordsSeen) {
      parcoordsPending = null;
      renderParcoords(s, trials);
    }
  }

  // the trials the page shows, drawn again when they change
  function draw(current) {
    renderMemoryFront(current.summary, current.trials);
    renderParcoordsWhenSeen(current.summary, current.trials);
    document.getElementById("report-link").href = `/api/studies/${encodeURIComponent(current.name)}/report`;
  }

  // the server's findings: once per version of the study, one fetch at a time
  async function study(current) {
    const key = `${current.name}/${current.version}`;
    if (key === insightKey) return;
    insightKey = key;
    let insight;
    try {
      insight = await api(`/api/studies/${encodeURIComponent(current.name)}/insight`);
    } catch (error) {
      if (insightKey === key) insightKey = null; // try again on the next poll
      throw error;
    }
    if (key !== insightKey) return; // the study moved meanwhile: a newer fetch draws it
    renderHealth(insight.health);
    heatmap("usage", insight.front_usage.share);
    renderImportance(insight.importance);
  }

  async function select(current, number) {
    const grid = await api(`/api/studies/${encodeURIComponent(current.name)}/placement?trial=${number}`);
    heatmap("placement-a", grid);
  }

  async function compare(current, number) {
    compared = number;
    const grid = await api(`/api/studies/${encodeURIComponent(current.name)}/placement?trial=${number}`);
    heatmap("placement-b", grid);
  }

  function renderHealth(findings) {
    const list = document.getElementById("health");
    list.replaceChildren();
    if (!findings.length) {
      list.append(el("li", "No finding: nothing in the stored trials suggests a problem.", "healthy"));
      return;
    }
    for (const f of findings) {
      const item = el("li");
      item.append(el("b", f.check + ": "), document.createTextNode(f.message + " — " + f.action));
      item.append(el("div", "evidence: " + f.evidence, "evidence"));
      list.append(item);
    }
  }

  function heatmap(id, grid) {
    const node = document.getElementById(id);
    if (!grid.layers.length) {
      Plotly.purge(node);
      node.replaceChildren(el("p", `${grid.title}: no adapter cells`, "hint"));
      return;
    }
    Plotly.react(node, [{
      type: "heatmap", z: grid.cells, x: grid.modules, y: grid.layers.map(String),
      colorscale: "Viridis", zmin: 0, hovertemplate: "layer %{y}, %{x}: %{z}<extra></extra>",
      text: grid.cells.map((row) => row.map((v) => (v ? String(Math.round(v * 10) / 10) : ""))),
      texttemplate: "%{text}",
    }], {
      title: { text: `${grid.title} (${grid.unit})`, font: { size: 13 } },
      xaxis: { title: { text: "module type" } }, yaxis: { title: { text: "layer" }, type: "category", autorange: "reversed" },
      margin: { t: 40, r: 10 },
    }, config);
  }

  function renderImportance(found) {
    const box = document.getElementById("importance");
    box.replaceChildren();
    for (const imp of found) {
      const node = el("div", null, "plot small");
      box.append(node);
      if (imp.note) {
        node.append(el("p", `${imp.objective}: ${imp.note}`, "hint"));
        continue;
      }
      const traces = Object.entries(imp.groups).map(([kind, groups]) => {
        const top = Object.entries(groups).slice(0, 8).reverse();
        return { type: "bar", orientation: "h", name: "by " + kind, x: top.map(([, v]) => 100 * v),
          y: top.map(([k]) => k), hovertemplate: "%{y}: %{x:.1f}%<extra></extra>" };
      });
      Plotly.react(node, traces, {
        title: { text: `${imp.objective}: share of variance (%)<br><sub>${imp.method}, ${imp.trials} trials</sub>`, font: { size: 12 } },
        margin: { l: 120, t: 50, r: 10 }, barmode: "group", legend: { orientation: "h" },
      }, config);
    }
  }

  function renderMemoryFront(s, trials) {
    const node = document.getElementById("front-memory");
    const y = primary(s.objectives);
    const x = s.objectives.find((o) => o.name === "peak_memory_mb");
    if (!x) { node.hidden = true; return; }
    node.hidden = false;
    const done = trials.filter((t) => t.state === "COMPLETE" && t[y.name] !== null && t[x.name] !== null);
    const trace = (rows, label, color, size) => ({
      x: rows.map((t) => t[x.name]), y: rows.map((t) => t[y.name]), customdata: rows.map((t) => t.trial),
      hovertemplate: "trial %{customdata}: %{y} at %{x:.1f} MiB<extra></extra>",
      mode: "markers", type: "scatter", name: label, marker: { color, size },
    });
    Plotly.react(node, [trace(done.filter((t) => !t.on_front), "dominated", "#b0b0b0", 8),
      trace(done.filter((t) => t.on_front), "Pareto front", "#c0392b", 12)], {
      title: { text: `Pareto front: ${y.name} vs ${x.name}` }, hovermode: "closest",
      xaxis: { title: { text: x.name } }, yaxis: { title: { text: y.name } },
      margin: { t: 40, r: 10 }, legend: { orientation: "h" },
    }, config);
  }

  function renderParcoords(s, trials) {
    const node = document.getElementById("parcoords");
    const done = trials.filter((t) => t.state === "COMPLETE");
    if (done.length < 2) { Plotly.purge(node); return; }
    const y = primary(s.objectives);
    const dims = s.objectives.map((o) => ({
      label: o.name, values: done.map((t) => t[o.name]),
      ...(o.name === "trainable_params" ? { tickformat: "~s" } : {}),
    }));
    Plotly.react(node, [{
      type: "parcoords", dimensions: dims,
      line: { color: done.map((t) => t[y.name]), colorscale: "Viridis", showscale: true },
    }], { margin: { t: 40, l: 60, r: 60 } }, config);
  }

  return { draw, study, select, compare, compared: () => compared };
})();
