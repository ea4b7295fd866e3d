// A small live line chart in SVG, for the dashboard: a few series over time, each scaled to
// its own maximum (remaining stock and rates differ by orders of magnitude). No library.
"use strict";

class LiveChart {
  /** svg: the <svg> (viewBox 0 0 600 160); series: [{name, cls}]; span: ms shown. */
  constructor(svg, series, span = 5 * 60 * 1000) {
    this.svg = svg;
    this.series = series;
    this.span = span;
    this.points = []; // [t, {name: value}]
    this.lines = series.map((s) => {
      const p = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      p.setAttribute("class", `line ${s.cls}`);
      p.setAttribute("fill", "none");
      svg.appendChild(p);
      return p;
    });
  }

  push(t, values) {
    this.points.push([t, values]);
    while (this.points.length > 2 && t - this.points[0][0] > this.span) this.points.shift();
    this.draw();
  }

  draw() {
    const [w, h] = [600, 160];
    if (this.points.length < 2) return;
    const t0 = this.points[0][0], t1 = this.points[this.points.length - 1][0];
    const dt = Math.max(1, t1 - t0);
    this.series.forEach((s, i) => {
      const max = Math.max(1, ...this.points.map(([, v]) => v[s.name] || 0));
      const pts = this.points.map(([t, v]) =>
        `${((t - t0) / dt * w).toFixed(1)},${(h - 4 - (v[s.name] || 0) / max * (h - 8)).toFixed(1)}`);
      this.lines[i].setAttribute("points", pts.join(" "));
    });
  }
}
