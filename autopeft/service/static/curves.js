// autopeft web UI, learning curves: the training loss per step of the front's trials and of the
// selected trial as small SVG line charts drawn here (no library, no network); in a
// multi-fidelity study the metric at each rung as markers on the right-hand axis. Trials stored
// before curves were recorded have none: a hint says so. Uses app.js's api/el helpers.
"use strict";

window.autopeftCurves = (function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 260, L = 56, T = 26, B = 36;
  let R = 56; // the right margin: room for the rung axis when there is one
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  let frontKey = null; // study name + version of the last front fetch (or the one in flight)

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function scale(lo, hi, from, to) {
    const span = hi - lo || Math.abs(hi) || 1;
    return (v) => from + ((v - lo) / span) * (to - from);
  }

  function range(values) {
    let lo = Math.min(...values), hi = Math.max(...values);
    if (lo === hi) { lo -= Math.abs(lo) * 0.05 || 0.5; hi += Math.abs(hi) * 0.05 || 0.5; }
    return [lo, hi];
  }

  function ticks(root, lo, hi, place, side) {
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      const label = Number.isInteger(v) ? String(v) : v.toPrecision(3);
      const at = place(v);
      if (side === "x") root.append(svg("text", { x: at, y: H - B + 14, "text-anchor": "middle" }, label));
      else root.append(svg("text", { x: side === "left" ? L - 5 : W - R + 5, y: at + 4,
        "text-anchor": side === "left" ? "end" : "start" }, label));
    }
  }

  function draw(node, body, title) {
    node.replaceChildren();
    const curves = body.curves.filter((c) => c.loss.length);
    if (!curves.length) {
      node.append(el("p", `${title}: no training loss curve stored (trials from before curves were recorded, or none trained)`, "hint"));
      return;
    }
    const steps = curves.flatMap((c) => c.loss.map((p) => p[0]).concat(c.rungs.map((p) => p[0])));
    const [ylo, yhi] = range(curves.flatMap((c) => c.loss.map((p) => p[1])));
    const marked = curves.some((c) => c.rungs.length > 1);
    R = marked ? 56 : 16;
    const x = scale(0, Math.max(...steps), L, W - R);
    const y = scale(ylo, yhi, H - B, T);
    const rungValues = curves.flatMap((c) => c.rungs.map((p) => p[1]));
    const [mlo, mhi] = marked ? range(rungValues) : [0, 1];
    const m = scale(mlo, mhi, H - B, T);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "curve-chart", role: "img" });
    root.append(svg("title", {}, `${title}: training loss per step`));
    root.append(svg("text", { x: L, y: 15, class: "curve-title" }, title));
    root.append(svg("path", { d: `M${L},${T}V${H - B}H${W - R}${marked ? `V${T}` : ""}`, class: "curve-axes" }));
    ticks(root, 0, Math.max(...steps), x, "x");
    ticks(root, ylo, yhi, y, "left");
    if (marked) ticks(root, mlo, mhi, m, "right");
    root.append(svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, "training step"));
    root.append(svg("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle",
      transform: `rotate(-90 12 ${(T + H - B) / 2})` }, "training loss"));
    if (marked) root.append(svg("text", { x: W - 10, y: (T + H - B) / 2, "text-anchor": "middle",
      transform: `rotate(90 ${W - 10} ${(T + H - B) / 2})` }, `${body.metric} at each rung`));
    curves.forEach((c, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const line = svg("polyline", { points: c.loss.map(([s, v]) => `${x(s).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
        stroke: colour, class: "curve-line" });
      const [first, last] = [c.loss[0][1], c.loss[c.loss.length - 1][1]];
      line.append(svg("title", {}, `trial ${c.trial}: loss ${first.toPrecision(4)} → ${last.toPrecision(4)} over ${c.loss[c.loss.length - 1][0]} steps`));
      root.append(line);
      if (marked) {
        for (const [s, v] of c.rungs) {
          const dot = svg("circle", { cx: x(s), cy: m(v), r: 4, fill: colour, class: "rung-mark" });
          dot.append(svg("title", {}, `trial ${c.trial}: ${body.metric} ${v.toPrecision(4)} after ${s} steps`));
          root.append(dot);
        }
      }
      if (curves.length > 1 && i < 8) { // a legend in the title row, from the right
        root.append(svg("text", { x: W - R - 40 * i, y: 15, fill: colour, "text-anchor": "end",
          class: "curve-legend" }, `#${c.trial}`));
      }
    });
    node.append(root);
  }

  async function study(current) {
    const key = `${current.name}/${current.version}`;
    if (key === frontKey) return;
    frontKey = key;
    let body;
    try {
      body = await api(`/api/studies/${encodeURIComponent(current.name)}/curves`);
    } catch (error) {
      if (frontKey === key) frontKey = null; // try again on the next poll
      throw error;
    }
    if (key !== frontKey) return; // the study moved meanwhile: a newer fetch draws it
    draw(document.getElementById("front-curves"), body, "the Pareto front's trials");
  }

  async function select(current, number) {
    const body = await api(`/api/studies/${encodeURIComponent(current.name)}/curves?trial=${number}`);
    draw(document.getElementById("trial-curve"), body, `trial ${number}`);
  }

  return { study, select, draw };
})();
