// moejax report page (moejax/figures/report.py embeds this): inflate the embedded data, draw the
// panels with Plotly.react, redraw on every <select> change. No network access.
(async function () {
  "use strict";
  const text = document.getElementById("moejax-data").textContent.trim();
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const D = await new Response(stream).json();
  const config = { displaylogo: false, responsive: true };
  const selects = Array.from(document.querySelectorAll("select[data-dim]:not([disabled])"));
  const group = document.getElementById("select-group");

  function selection() {
    const i = {};
    for (const s of selects) i[s.dataset.dim] = Number(s.value);
    return i;
  }
  const at = (a, i) => a[i.model][i.hardware][i.num_gpus][i.context];
  const caption = (i, what, point) =>
    `${what}<br><sub>${D.dims.model[i.model]} on ` + (point
      ? `${D.dims.num_gpus[i.num_gpus]} × ${D.dims.hardware[i.hardware]}, context ${D.dims.context[i.context]} tokens`
      : D.dims.hardware[i.hardware]) + "</sub>";
  const titled = (layout, i, point) => Object.assign({}, layout, { title: { text: caption(i, layout.title.text, point) } });

  function frontier(i) {
    const F = D.frontier;
    const traces = F.curves.map((name, k) => {
      const cost = F.cost ? at(F.cost, i)[k] : null;
      const joules = F.joules ? at(F.joules, i)[k] : null;
      return {
        type: "scatter", mode: "lines+markers", name: name, x: F.levels, y: at(F.tput, i)[k],
        line: { color: F.colours[k], width: k ? 1.5 : 3, dash: k ? "dash" : "solid" }, marker: { size: k ? 4 : 6 },
        customdata: F.levels.map((_, j) => [cost ? cost[j] : null, joules ? joules[j] : null]),
        hovertemplate: F.hover,
      };
    });
    Plotly.react("plot-frontier", traces, titled(F.layout, i, true), config);
  }

  function kappaStarFrontier(i) {
    const K = D.kappa_star_frontier;
    const trace = {
      type: "scatter", mode: "lines+markers", name: "κ*", x: K.levels, y: at(K.value, i), customdata: at(K.reason, i),
      hovertemplate: "at least %{x:.3g} tokens/s per user: κ* = %{y:.3g}<extra>%{customdata}</extra>",
    };
    const flagged = {
      type: "scatter", mode: "markers", name: "no κ* (flag on hover)", marker: { symbol: "x", color: "#999" },
      x: K.levels.filter((_, j) => at(K.value, i)[j] === null), y: at(K.value, i).filter((v) => v === null).map(() => 1),
      text: at(K.reason, i).filter((_, j) => at(K.value, i)[j] === null), hovertemplate: "%{x:.3g} tokens/s per user: %{text}<extra></extra>",
    };
    Plotly.react("plot-kappa_star_frontier", [trace, flagged], titled(K.layout, i, true), config);
  }

  function heatmap(id, layout, i, z, text, extra) {
    const trace = Object.assign({ type: "heatmap", x: D.dims.context, y: D.dims.num_gpus, z: z, text: text,
      texttemplate: "%{text}", hovertemplate: "%{y} GPUs, context %{x}: %{text}<extra></extra>" }, extra);
    Plotly.react(id, [trace], titled(layout, i, false), config);
  }

  function kappaStar(i) {
    const K = D.kappa_star;
    heatmap("plot-kappa_star", K.layout, i, K.value[i.model][i.hardware], K.text[i.model][i.hardware],
      { colorscale: "Viridis", colorbar: { title: { text: "κ*" } } });
  }

  function bound(i) {
    const B = D.bound;
    const codes = B.code[i.model][i.hardware];
    heatmap("plot-bound", B.layout, i, codes, codes.map((row) => row.map((c) => B.meanings[c])),
      { colorscale: B.colorscale, zmin: -0.5, zmax: B.meanings.length - 0.5, showscale: false });
  }

  function sensitivity(i) {
    const S = D.sensitivity;
    const traces = S.curves.map((name, k) => ({
      type: "bar", name: name, x: S.labels, y: at(S.values, i)[k], marker: { color: S.colours[k] },
      hovertemplate: "%{x}: %{y:.3g}<extra>%{fullData.name}</extra>",
    }));
    Plotly.react("plot-sensitivity", traces, titled(S.layout, i, true), config);
  }

  function validation() {
    const V = D.validation;
    const key = group ? group.value : null;
    const names = Array.from(new Set(V.rows.map((r) => (key ? r[key] : "") || "(none)")));
    const rows = V.rows.filter((r) => r.predicted !== null);
    const traces = names.map((g) => {
      const mine = rows.filter((r) => ((key ? r[key] : "") || "(none)") === g);
      return { type: "scatter", mode: "markers", name: g, x: mine.map((r) => r.measured), y: mine.map((r) => r.predicted),
        text: mine.map((r) => r.id), hovertemplate: "%{text}<br>measured %{x:.4g}, predicted %{y:.4g}<extra>%{fullData.name}</extra>" };
    });
    const all = rows.flatMap((r) => [r.measured, r.predicted]);
    const lo = Math.min(...all) / 2, hi = Math.max(...all) * 2;
    traces.push({ type: "scatter", mode: "lines", name: "predicted = measured", x: [lo, hi], y: [lo, hi],
      line: { color: "#888", dash: "dot" }, hoverinfo: "skip" });
    Plotly.react("plot-validation", traces, V.layout, config);
  }

  const panels = { frontier: frontier, kappa_star_frontier: kappaStarFrontier, kappa_star: kappaStar, bound: bound,
    sensitivity: sensitivity, validation: validation };
  function draw() {
    const i = selection();
    for (const [name, fn] of Object.entries(panels)) if (D[name]) fn(i);
  }
  for (const s of selects) s.addEventListener("change", draw);
  if (group) group.addEventListener("change", validation);
  draw();
  window.moejaxReport = { ready: true, data: D };
})();
