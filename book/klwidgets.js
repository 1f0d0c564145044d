/* klcourse interactive figures: plain JavaScript, no library, no network, no kernel.
 *
 * Each figure is a <div class="kl-widget" data-kl-widget="NAME" hidden> placed in a chapter next to the static
 * figure it extends; this script fills it in and unhides it (with scripts off the reader sees the static figure
 * alone; in print the widgets are hidden by klwidgets.css). Every input is a native, labelled
 * <input type="range"> (keyboard and touch); the numbers are written into one aria-live region. Each shown
 * number is a <span data-kl-out="..."> whose data-value holds the full double (tests/site/test_widgets.py
 * compares both with klcourse).
 *
 * The formulas are the library's stable forms:
 *  - klNormal: klcourse/gaussians.py kl_normal = phi(2x)/2 + z^2/2, x = log(s0/s1), z = (m0 - m1)/s1,
 *    phi(u) = e^u - 1 - u >= 0 (r^2/2 - 1/2 - x once x >= 1/2, as _variance_part does);
 *  - klDiscrete: klcourse/divergences.py kl_divergence as a sum of non-negative terms
 *    q_i - p_i + p_i log(p_i/q_i) = p_i phi(r_i), phi(r) = r - log1p(r), r_i = (q_i - p_i)/p_i (the terms of
 *    sum q - sum p = 0 added in); p_i = 0 adds q_i (0 log 0 = 0), q_i = 0 < p_i gives inf;
 *  - jsDiscrete: js_divergence = sum_i m_i g(t_i), t_i = (q_i - p_i)/(q_i + p_i),
 *    g(t) = [(1+t) log(1+t) + (1-t) log(1-t)]/2 (its power series near 0, log 2 at t = +-1).
 */
(() => {
  "use strict";
  const SVGNS = "http://www.w3.org/2000/svg";
  const LN2 = Math.LN2;

  // ------------------------------------------------------------------------------------------------ formulas
  function expm1mx(u) {  // e^u - 1 - u, >= 0, no cancellation near 0
    if (Math.abs(u) < 0.1) {
      let term = u * u / 2, sum = term;
      for (let k = 3; k < 30 && Math.abs(term) > 1e-18 * sum; k++) { term *= u / k; sum += term; }
      return sum;
    }
    return Math.expm1(u) - u;
  }

  function klNormal(m0, s0, m1, s1) {
    const r = s0 / s1, x = Math.log(r), z = (m0 - m1) / s1;
    const width = x >= 0.5 ? (0.5 * r) * r - 0.5 - x : 0.5 * expm1mx(2 * x);
    return width + 0.5 * z * z;
  }

  function rMinusLog1p(r) {  // r - log1p(r) >= 0 for r >= -1
    if (r === -1) return Infinity;
    if (Math.abs(r) < 0.25) {  // r^2/2 - r^3/3 + r^4/4 - ...
      let power = r * r, sum = 0;
      for (let k = 2; k < 60; k++) {
        const term = power / k;
        sum += k % 2 === 0 ? term : -term;
        if (Math.abs(term) < 1e-18 * sum) break;
        power *= r;
      }
      return sum;
    }
    return r - Math.log1p(r);
  }

  function klDiscrete(p, q) {
    let sum = 0;
    for (let i = 0; i < p.length; i++) {
      if (p[i] === 0) { sum += q[i]; continue; }  // its term q - p + p log(p/q), with 0 log 0 = 0
      if (q[i] === 0) return Infinity;
      sum += p[i] * rMinusLog1p((q[i] - p[i]) / p[i]);
    }
    return sum;
  }

  function jsKernel(t) {  // [(1+t) log(1+t) + (1-t) log(1-t)] / 2
    if (Math.abs(t) === 1) return LN2;
    if (Math.abs(t) < 0.25) {  // sum_k t^(2k) / (2k (2k-1))
      const v = t * t;
      let power = v, sum = 0;
      for (let k = 1; k < 40; k++) {
        const term = power / (2 * k * (2 * k - 1));
        sum += term;
        if (term < 1e-18 * sum) break;
        power *= v;
      }
      return sum;
    }
    return 0.5 * ((1 + t) * Math.log1p(t) + (1 - t) * Math.log1p(-t));
  }

  function jsDiscrete(p, q) {
    let sum = 0;
    for (let i = 0; i < p.length; i++) {
      const s = p[i] + q[i];
      if (s > 0) sum += 0.5 * s * jsKernel((q[i] - p[i]) / s);
    }
    return sum;
  }

  function tvDiscrete(p, q) {
    let sum = 0;
    for (let i = 0; i < p.length; i++) sum += Math.abs(p[i] - q[i]);
    return 0.5 * sum;
  }

  function logRatioNormal(x, m0, s0, m1, s1) {  // log N(x; m0, s0^2) - log N(x; m1, s1^2), no underflow
    const a = (x - m0) / s0, b = (x - m1) / s1;
    return Math.log(s1 / s0) - 0.5 * a * a + 0.5 * b * b;
  }

  function normalPdf(x, m, s) {
    const a = (x - m) / s;
    return Math.exp(-0.5 * a * a) / (s * Math.sqrt(2 * Math.PI));
  }

  // ------------------------------------------------------------------------------------------------ display
  function fmt(x) {
    if (x === Infinity) return "∞";
    if (x === -Infinity) return "−∞";
    if (Number.isInteger(x) && Math.abs(x) < 1e5) return String(x).replace("-", "−");
    const a = Math.abs(x);
    const text = a >= 1e-3 && a < 1e5 ? x.toPrecision(4) : x.toExponential(3).replace("e+", "e");
    return text.replace("-", "−");
  }

  function el(tag, attrs, parent, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function svgEl(tag, attrs, parent) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  let uid = 0;

  function slider(parent, key, label, min, max, step, value, digits) {
    const id = `kl-w-${key}-${++uid}`;
    const row = el("div", {class: "kl-w-row"}, parent);
    el("label", {for: id}, row, label);
    const input = el("input", {type: "range", id, min, max, step, value, "data-kl-in": key}, row);
    const shown = el("span", {class: "kl-w-val", "aria-hidden": "true"}, row);
    const sync = () => {
      const text = Number(input.value).toFixed(digits);
      shown.textContent = text;
      input.setAttribute("aria-valuetext", text);
    };
    input.addEventListener("input", sync);
    sync();
    return input;
  }

  function select(parent, key, label, options) {
    const id = `kl-w-${key}-${++uid}`;
    const row = el("div", {class: "kl-w-row"}, parent);
    el("label", {for: id}, row, label);
    const box = el("select", {id, "data-kl-in": key}, row);
    for (const [value, text] of options) el("option", {value}, box, text);
    return box;
  }

  function checkbox(parent, key, label) {
    const id = `kl-w-${key}-${++uid}`;
    const row = el("div", {class: "kl-w-row kl-w-check"}, parent);
    const input = el("input", {type: "checkbox", id, "data-kl-in": key}, row);
    el("label", {for: id}, row, label);
    return input;
  }

  function output(parent, key, label) {  // "label: value", value in a span the tests read
    const item = el("span", {class: "kl-w-item"}, parent);
    el("span", {}, item, `${label} = `);
    return el("span", {"data-kl-out": key, class: "kl-w-num"}, item);
  }

  function put(span, value, unit) {
    span.dataset.value = String(value);
    span.textContent = fmt(value) + (unit && Number.isFinite(value) ? ` ${unit}` : "");
  }

  // A line plot drawn at the container's own pixel width, so that its 12 px text stays 12 px on a phone.
  function plot(parent, label, height) {
    const svg = svgEl("svg", {class: "kl-w-plot", role: "img", "aria-label": label, height}, parent);
    return {svg, height, width: () => Math.max(240, Math.round(parent.clientWidth || 600))};
  }

  function drawLines(fig, xs, series, opts) {
    const svg = fig.svg, W = fig.width(), H = fig.height, left = 12, right = 8, top = 8, bottom = 26;
    svg.setAttribute("width", W);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    let lo = 0, hi = 0;
    for (const s of series) for (const y of s.ys) if (Number.isFinite(y)) { lo = Math.min(lo, y); hi = Math.max(hi, y); }
    if (hi === lo) hi = lo + 1;
    const x0 = xs[0], x1 = xs[xs.length - 1];
    const X = (x) => left + (x - x0) / (x1 - x0) * (W - left - right);
    const Y = (y) => top + (hi - Math.min(hi, Math.max(lo, y))) / (hi - lo) * (H - top - bottom);
    svgEl("line", {x1: left, x2: W - right, y1: Y(0), y2: Y(0), class: "kl-w-axis"}, svg);
    for (let t = Math.ceil(x0); t <= x1; t += opts.tick) {
      svgEl("line", {x1: X(t), x2: X(t), y1: H - bottom, y2: H - bottom + 4, class: "kl-w-axis"}, svg);
      const label = svgEl("text", {x: X(t), y: H - 8, class: "kl-w-tick"}, svg);
      label.textContent = String(t).replace("-", "−");
    }
    for (const s of series) {
      let d = "";
      xs.forEach((x, i) => { d += `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(s.ys[i]).toFixed(1)}`; });
      if (s.fill) {
        svgEl("path", {d: `${d}L${X(x1)},${Y(0)}L${X(x0)},${Y(0)}Z`, class: s.fill}, svg);
      }
      svgEl("path", {d, class: s.cls}, svg);
    }
  }

  function legend(parent, items) {
    const box = el("p", {class: "kl-w-legend"}, parent);
    for (const [cls, text] of items) {
      const item = el("span", {}, box);
      el("span", {class: `kl-w-swatch ${cls}`, "aria-hidden": "true"}, item);
      item.appendChild(document.createTextNode(text));
    }
    return box;
  }

  function frame(root, title) {
    root.textContent = "";
    el("p", {class: "kl-w-title"}, root, title);
    const controls = el("div", {class: "kl-w-controls"}, root);
    const figure = el("div", {class: "kl-w-figure"}, root);
    const out = el("p", {class: "kl-w-out", "aria-live": "polite", "aria-atomic": "true"}, root);
    return {controls, figure, out};
  }

  function wire(root, inputs, update) {
    for (const input of inputs) {
      input.addEventListener("input", update);
      input.addEventListener("change", update);
    }
    let width = 0;
    new ResizeObserver(() => {
      if (root.clientWidth !== width) { width = root.clientWidth; update(); }
    }).observe(root);
    update();
  }

  // ------------------------------------------------------------------------------------------- 1. Gaussians
  function gaussians(root) {
    const d = root.dataset, num = (v, dflt) => (v === undefined ? dflt : Number(v));
    const ui = frame(root, "Two Gaussians: move the means and standard deviations of P and Q.");
    const muP = slider(ui.controls, "mu_p", "μ of P", -4, 4, 0.1, num(d.muP, 0), 1);
    const sdP = slider(ui.controls, "sigma_p", "σ of P (standard deviation)", 0.05, 4, 0.05, num(d.sigmaP, 1), 2);
    const muQ = slider(ui.controls, "mu_q", "μ of Q", -4, 4, 0.1, num(d.muQ, 1.5), 1);
    const sdQ = slider(ui.controls, "sigma_q", "σ of Q (standard deviation)", 0.05, 4, 0.05, num(d.sigmaQ, 0.8), 2);
    const which = select(ui.controls, "integrand", "Integrand shown",
                         [["forward", "p log(p/q), of D(P‖Q)"], ["reverse", "q log(q/p), of D(Q‖P)"]]);
    const unit = select(ui.controls, "unit", "Unit", [["nats", "nats (natural log)"], ["bits", "bits (log base 2)"]]);
    const traps = checkbox(ui.controls, "traps", "Show two common mistakes");
    legend(ui.figure, [["kl-w-p", "density of P"], ["kl-w-q", "density of Q"]]);
    const top = plot(ui.figure, "Densities of P and Q", 150);
    const legend2 = legend(ui.figure, [["kl-w-pos", "integrand above 0"], ["kl-w-neg", "below 0"]]);
    const bottom = plot(ui.figure, "Integrand of the chosen divergence", 150);
    const line1 = el("span", {class: "kl-w-line"}, ui.out);
    const fwd = output(line1, "forward", "D(P‖Q)");
    const rev = output(line1, "reverse", "D(Q‖P)");
    const line2 = el("span", {class: "kl-w-line kl-w-trap"}, ui.out);
    const trapVar = output(line2, "trap_variance", "variances passed as σ");
    const trapLog = output(line2, "trap_log10", "log10 in the log term");
    const n = 641, xs = Array.from({length: n}, (_, i) => -8 + 16 * i / (n - 1));
    const pd = new Float64Array(n), qd = new Float64Array(n), ig = new Float64Array(n);
    const update = () => {
      const m0 = Number(muP.value), s0 = Number(sdP.value), m1 = Number(muQ.value), s1 = Number(sdQ.value);
      const scale = unit.value === "bits" ? 1 / LN2 : 1, u = unit.value;
      put(fwd, klNormal(m0, s0, m1, s1) * scale, u);
      put(rev, klNormal(m1, s1, m0, s0) * scale, u);
      line2.hidden = !traps.checked;
      put(trapVar, klNormal(m0, s0 * s0, m1, s1 * s1) * scale, u);
      const gap = m0 - m1;  // the textbook form with log10 for its first term (chapter 1's trap): can be < 0
      put(trapLog, Math.log10(s1 / s0) + (s0 * s0 + gap * gap) / (2 * s1 * s1) - 0.5);
      const forward = which.value === "forward";
      for (let i = 0; i < n; i++) {
        pd[i] = normalPdf(xs[i], m0, s0);
        qd[i] = normalPdf(xs[i], m1, s1);
        const lr = logRatioNormal(xs[i], m0, s0, m1, s1);
        ig[i] = forward ? (pd[i] === 0 ? 0 : pd[i] * lr) : (qd[i] === 0 ? 0 : -qd[i] * lr);
      }
      drawLines(top, xs, [{ys: pd, cls: "kl-w-p"}, {ys: qd, cls: "kl-w-q"}], {tick: 2});
      const pos = Array.from(ig, (v) => Math.max(v, 0)), neg = Array.from(ig, (v) => Math.min(v, 0));
      drawLines(bottom, xs, [{ys: pos, cls: "kl-w-none", fill: "kl-w-pos"}, {ys: neg, cls: "kl-w-none", fill: "kl-w-neg"},
                             {ys: ig, cls: "kl-w-ig"}], {tick: 2});
      legend2.firstChild.lastChild.textContent = `${forward ? "p log(p/q)" : "q log(q/p)"} above 0`;
      bottom.svg.setAttribute("aria-label", `Integrand ${forward ? "p log(p/q) of D(P‖Q)" : "q log(q/p) of D(Q‖P)"};`
                              + ` its area is ${fmt(Number(forward ? fwd.dataset.value : rev.dataset.value))} ${u}`);
    };
    wire(root, [muP, sdP, muQ, sdQ, which, unit, traps], update);
  }

  // -------------------------------------------------------------------------- 2. Discrete distributions
  function discrete(root) {
    const parse = (text, dflt) => (text ? text.split(",").map(Number) : dflt);
    const pw = parse(root.dataset.p, [50, 30, 20]), qw = parse(root.dataset.q, [70, 30, 0]);
    const names = (root.dataset.outcomes || "a,b,c").split(",");
    const ui = frame(root, "Two distributions on a few outcomes: set the weight of each bar (they are normalised).");
    const pIn = names.map((name, i) => slider(ui.controls, `p${i}`, `weight of ${name} under P`, 0, 100, 1, pw[i], 0));
    const qIn = names.map((name, i) => slider(ui.controls, `q${i}`, `weight of ${name} under Q`, 0, 100, 1, qw[i], 0));
    const unit = select(ui.controls, "unit", "Unit", [["nats", "nats (natural log)"], ["bits", "bits (log base 2)"]]);
    legend(ui.figure, [["kl-w-p", "P"], ["kl-w-q", "Q"]]);
    const fig = plot(ui.figure, "Bars of P and Q", 170);
    const line1 = el("span", {class: "kl-w-line"}, ui.out);
    const fwd = output(line1, "forward", "D(P‖Q)");
    const rev = output(line1, "reverse", "D(Q‖P)");
    const line2 = el("span", {class: "kl-w-line"}, ui.out);
    const js = output(line2, "js", "JS");
    const tv = output(line2, "tv", "TV");
    const note = el("span", {class: "kl-w-line kl-w-note"}, ui.out);
    const update = () => {
      const a = pIn.map((x) => Number(x.value)), b = qIn.map((x) => Number(x.value));
      const sa = a.reduce((s, x) => s + x, 0), sb = b.reduce((s, x) => s + x, 0);
      const scale = unit.value === "bits" ? 1 / LN2 : 1, u = unit.value;
      const ok = sa > 0 && sb > 0;
      const p = a.map((x) => (ok ? x / sa : 0)), q = b.map((x) => (ok ? x / sb : 0));
      for (const span of [fwd, rev, js, tv]) span.parentNode.hidden = !ok;
      if (!ok) {
        note.textContent = `Give ${sa > 0 ? "Q" : "P"} some weight: a distribution needs total probability 1.`;
      } else {
        put(fwd, klDiscrete(p, q) * scale, u);
        put(rev, klDiscrete(q, p) * scale, u);
        put(js, jsDiscrete(p, q) * scale, u);
        put(tv, tvDiscrete(p, q));
        const zq = names.filter((_, i) => q[i] === 0 && p[i] > 0), zp = names.filter((_, i) => p[i] === 0 && q[i] > 0);
        note.textContent = (zq.length ? `Q gives ${zq.join(", ")} probability 0 but P does not: D(P‖Q) = ∞. ` : "")
          + (zp.length ? `P gives ${zp.join(", ")} probability 0 but Q does not: D(Q‖P) = ∞.` : "");
      }
      const svg = fig.svg, W = fig.width(), H = fig.height, bottom = 26, top = 18;
      svg.setAttribute("width", W);
      svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      const slot = (W - 16) / names.length, bar = Math.min(40, slot / 3), Y = (v) => H - bottom - v * (H - bottom - top);
      names.forEach((name, i) => {
        const cx = 8 + slot * (i + 0.5);
        [[p[i], "kl-w-p-bar", -bar - 1], [q[i], "kl-w-q-bar", 1]].forEach(([v, cls, dx]) => {
          svgEl("rect", {x: cx + dx, y: Y(v), width: bar, height: Math.max(0, Y(0) - Y(v)), class: cls}, svg);
          const t = svgEl("text", {x: cx + dx + bar / 2, y: Y(v) - 4, class: "kl-w-tick"}, svg);
          t.textContent = v.toFixed(2);
        });
        const label = svgEl("text", {x: cx, y: H - 8, class: "kl-w-tick"}, svg);
        label.textContent = name;
      });
      svgEl("line", {x1: 8, x2: W - 8, y1: Y(0), y2: Y(0), class: "kl-w-axis"}, svg);
      svg.setAttribute("aria-label", `Bars: P = ${p.map((v) => v.toFixed(2)).join(", ")}; `
                       + `Q = ${q.map((v) => v.toFixed(2)).join(", ")}`);
    };
    wire(root, [...pIn, ...qIn, unit], update);
  }

  // ------------------------------------------------------------------------------------------ 4. Temperature
  // log_softmax(z/T) (klcourse's distillation_loss works in log space): shifted by the largest logit, whose own
  // exp(0) = 1 is kept out of the sum so that log1p keeps the small rest exact (a confident teacher at low T)
  function logSoftmax(z, T) {
    const a = z.map((v) => v / T), top = a.indexOf(Math.max(...a)), m = a[top];
    let rest = 0;
    a.forEach((v, k) => { if (k !== top) rest += Math.exp(v - m); });
    const log1pRest = Math.log1p(rest);
    return a.map((v) => (v - m) - log1pRest);  // (not v - lse: the top class's -log1p(rest) would cancel)
  }

  function temperature(root) {
    const parse = (text, dflt) => (text ? text.split(",").map(Number) : dflt);
    const teacher = parse(root.dataset.teacher, [6, 3.5, 1, 0, -1]);
    const student = parse(root.dataset.student, [4, 4, 0.5, 0.5, 0]);
    const names = (root.dataset.classes || teacher.map((_, i) => String(i)).join(",")).split(",");
    const ui = frame(root, "Soft targets: divide the logits by a temperature T before the softmax.");
    const logT = slider(ui.controls, "log10_t", "Temperature T (log scale)", -1, 1.5, 0.01, 0, 2);
    const shown = logT.nextElementSibling;
    const sync = () => {
      const text = fmt(10 ** Number(logT.value));
      shown.textContent = text;
      logT.setAttribute("aria-valuetext", text);
    };
    logT.addEventListener("input", sync);
    sync();
    el("p", {class: "kl-w-legend"}, ui.controls,
       `Teacher logits (${teacher.join(", ")}); student logits (${student.join(", ")}).`.replace(/-/g, "−"));
    legend(ui.figure, [["kl-w-p", "teacher p_t"], ["kl-w-q", "student p_s"]]);
    const fig = plot(ui.figure, "Soft targets of teacher and student", 170);
    const line1 = el("span", {class: "kl-w-line"}, ui.out);
    const tOut = output(line1, "T", "T");
    const hOut = output(line1, "entropy", "H(p_t)");
    const line2 = el("span", {class: "kl-w-line"}, ui.out);
    const dOut = output(line2, "t2_kl", "T²·D(p_t‖p_s)");
    const limit = output(line2, "limit", "its limit as T → ∞");
    const K = teacher.length;
    const update = () => {
      const T = 10 ** Number(logT.value);
      const lt = logSoftmax(teacher, T), ls = logSoftmax(student, T);
      const pt = lt.map(Math.exp), ps = ls.map(Math.exp);
      let h = 0, d = 0;
      for (let k = 0; k < K; k++) { h -= pt[k] * lt[k]; d += pt[k] * (lt[k] - ls[k]); }
      put(tOut, T);
      put(hOut, h, `nats (max log ${K} = ${fmt(Math.log(K))})`);
      put(dOut, T * T * d, "nats");
      const gap = student.map((s, k) => s - teacher[k]), mean = gap.reduce((a, b) => a + b, 0) / K;
      put(limit, gap.reduce((a, g) => a + (g - mean) ** 2, 0) / (2 * K), "nats");
      const svg = fig.svg, W = fig.width(), H = fig.height, bottom = 26, top = 18;
      svg.setAttribute("width", W);
      svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      const slot = (W - 16) / K, bar = Math.min(30, slot / 2.6), Y = (v) => H - bottom - v * (H - bottom - top);
      for (let k = 0; k < K; k++) {
        const cx = 8 + slot * (k + 0.5);
        svgEl("rect", {x: cx - bar - 1, y: Y(pt[k]), width: bar, height: Y(0) - Y(pt[k]), class: "kl-w-p-bar"}, svg);
        svgEl("rect", {x: cx + 1, y: Y(ps[k]), width: bar, height: Y(0) - Y(ps[k]), class: "kl-w-q-bar"}, svg);
        const label = svgEl("text", {x: cx, y: H - 8, class: "kl-w-tick"}, svg);
        label.textContent = names[k];
      }
      svgEl("line", {x1: 8, x2: W - 8, y1: Y(0), y2: Y(0), class: "kl-w-axis"}, svg);
      svg.setAttribute("aria-label", `Soft targets at T = ${fmt(T)}: teacher ${pt.map((v) => v.toFixed(2)).join(", ")}; `
                       + `student ${ps.map((v) => v.toFixed(2)).join(", ")}`);
    };
    wire(root, [logT], update);
  }

  // ------------------------------------------------------------------------------------------- 5. Estimators
  // mulberry32 (a 32-bit counter-based generator; tests/site/test_widgets.py repeats it in numpy) and Box-Muller
  function mulberry32(seed) {
    let a = seed | 0;
    return () => {
      a = (a + 0x6D2B79F5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function estimators(root) {
    const reps = Number(root.dataset.reps || 400), seed = Number(root.dataset.seed || 16);
    const ui = frame(root, `Estimating D(Q‖P) from n draws of Q = N(0, 1), with P = N(δ, 1): ${reps} repetitions.`);
    const delta = slider(ui.controls, "delta", "Gap δ between the means", 0.05, 3, 0.05, Number(root.dataset.delta || 0.5), 2);
    const logN = slider(ui.controls, "log10_n", "Sample size n (log scale)", 0, 3, 0.05, Number(root.dataset.log10N || 2), 0);
    const nOf = () => Math.round(10 ** Number(logN.value));
    const shownN = logN.nextElementSibling;
    const syncN = () => { shownN.textContent = String(nOf()); logN.setAttribute("aria-valuetext", String(nOf())); };
    logN.addEventListener("input", syncN);
    syncN();
    legend(ui.figure, [["kl-w-k1", "k1 = −log r"], ["kl-w-k2", "k2 = (log r)²/2"], ["kl-w-k3", "k3 = r − 1 − log r"]]);
    const fig = plot(ui.figure, "Histograms of the three estimates", 230);
    const line1 = el("span", {class: "kl-w-line"}, ui.out);
    const nOut = output(line1, "n", "n");
    const exact = output(line1, "exact", "exact D(Q‖P)");
    const table = el("table", {class: "kl-w-table"}, ui.out);
    const head = el("tr", {}, el("thead", {}, table));
    for (const text of ["", "mean", "bias", "std", "< 0"]) el("th", {scope: "col"}, head, text);
    const body = el("tbody", {}, table), cells = {};
    for (const name of ["k1", "k2", "k3"]) {
      const row = el("tr", {}, body);
      el("th", {scope: "row"}, row, name);
      for (const stat of ["mean", "bias", "std", "negative"]) {
        cells[`${name}_${stat}`] = el("span", {"data-kl-out": `${name}_${stat}`, class: "kl-w-num"}, el("td", {}, row));
      }
    }
    const update = () => {
      const d = Number(delta.value), n = nOf(), rand = mulberry32(seed);
      const est = {k1: new Float64Array(reps), k2: new Float64Array(reps), k3: new Float64Array(reps)};
      for (let r = 0; r < reps; r++) {
        let s1 = 0, s2 = 0, s3 = 0;
        for (let i = 0; i < n; i++) {
          const u1 = rand(), u2 = rand();
          const x = Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);  // x ~ Q = N(0, 1)
          const logR = d * x - 0.5 * d * d;  // log p(x) - log q(x)
          s1 -= logR;
          s2 += 0.5 * logR * logR;
          s3 += expm1mx(logR);  // as klcourse/estimators.py: expm1(log r) - log r
        }
        est.k1[r] = s1 / n; est.k2[r] = s2 / n; est.k3[r] = s3 / n;
      }
      const truth = klNormal(0, 1, d, 1);
      put(nOut, n);
      put(exact, truth, "nats");
      let lo = Infinity, hi = -Infinity;
      for (const name in est) {
        const v = est[name];
        let mean = 0, neg = 0;
        for (const x of v) { mean += x; if (x < 0) neg++; lo = Math.min(lo, x); hi = Math.max(hi, x); }
        mean /= reps;
        let ss = 0;
        for (const x of v) ss += (x - mean) ** 2;
        put(cells[`${name}_mean`], mean);
        put(cells[`${name}_bias`], mean - truth);
        put(cells[`${name}_std`], Math.sqrt(ss / (reps - 1)));
        put(cells[`${name}_negative`], neg / reps);
      }
      lo = Math.min(lo, 0, truth); hi = Math.max(hi, truth * 1.05);
      const svg = fig.svg, W = fig.width(), H = fig.height, left = 30, right = 10, band = (H - 30) / 3, bins = 40;
      svg.setAttribute("width", W);
      svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      const X = (v) => left + (v - lo) / (hi - lo) * (W - left - right), width = (hi - lo) / bins;
      ["k1", "k2", "k3"].forEach((name, row) => {
        const counts = new Array(bins).fill(0);
        for (const x of est[name]) counts[Math.min(bins - 1, Math.floor((x - lo) / width))]++;
        const top = Math.max(...counts), base = 4 + band * (row + 1) - 4;
        counts.forEach((c, b) => {
          if (c) {
            svgEl("rect", {x: X(lo + b * width), y: base - c / top * (band - 8), width: Math.max(1, X(lo + width) - X(lo) - 0.5),
                           height: c / top * (band - 8), class: `kl-w-${name}`}, svg);
          }
        });
        const label = svgEl("text", {x: 14, y: base - band / 2 + 6, class: "kl-w-tick"}, svg);
        label.textContent = name;
        svgEl("line", {x1: left, x2: W - right, y1: base, y2: base, class: "kl-w-axis"}, svg);
      });
      svgEl("line", {x1: X(truth), x2: X(truth), y1: 4, y2: H - 26, class: "kl-w-exact"}, svg);
      svgEl("line", {x1: X(0), x2: X(0), y1: 4, y2: H - 26, class: "kl-w-axis"}, svg);
      const raw = (hi - lo) / Math.max(2, Math.floor(W / 90)), mag = 10 ** Math.floor(Math.log10(raw));
      const ticks = [1, 2, 5, 10].find((m) => m * mag >= raw) * mag;
      for (let k = Math.ceil(lo / ticks); k * ticks <= hi; k++) {
        const label = svgEl("text", {x: X(k * ticks), y: H - 8, class: "kl-w-tick"}, svg);
        label.textContent = String(Number((k * ticks).toPrecision(6))).replace("-", "−");
      }
      svg.setAttribute("aria-label", `Histograms of ${reps} estimates of k1, k2 and k3 from ${n} draws each; `
                       + `the exact value ${fmt(truth)} nats is the dashed line`);
    };
    wire(root, [delta, logN], update);
  }

  // ------------------------------------------------------------------------------- 3. Forward vs reverse fit
  // As klcourse/asymmetry.py: the forward fit is moment matching (fit_forward_gaussian); the reverse fit is Adam
  // on (mu, log sigma) from the chosen start, lr 0.05 decaying linearly to 0 over 500 steps (fit_reverse_gaussian),
  // here with the analytic gradient of D(Q||P) = -H(Q) - E_Q[log p], E_Q by the trapezoidal rule in z = (x-mu)/sigma.
  const Z = Array.from({length: 401}, (_, j) => -10 + j * 0.05);
  const ZW = Z.map((z, j) => (j === 0 || j === Z.length - 1 ? 0.025 : 0.05) * Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI));

  function mixture(w, m, s) {  // log p by log-sum-exp (klcourse mixture_logpdf), no allocation per call
    const K = w.length, c = new Float64Array(K), inv = s.map((v) => 1 / v), buf = new Float64Array(K);
    for (let k = 0; k < K; k++) c[k] = Math.log(w[k]) - Math.log(s[k]) - 0.5 * Math.log(2 * Math.PI);
    const fill = (x) => {
      let top = -Infinity;
      for (let k = 0; k < K; k++) {
        const a = (x - m[k]) * inv[k];
        buf[k] = c[k] - 0.5 * a * a;
        if (buf[k] > top) top = buf[k];
      }
      return top;
    };
    return {
      logp(x) {
        const top = fill(x);
        let sum = 0;
        for (let k = 0; k < K; k++) sum += Math.exp(buf[k] - top);
        return top + Math.log(sum);
      },
      dlogp(x) {  // d/dx log p = sum_k resp_k * (-(x - m_k)/s_k^2)
        const top = fill(x);
        let tot = 0, acc = 0;
        for (let k = 0; k < K; k++) {
          const e = Math.exp(buf[k] - top);
          tot += e;
          acc -= e * (x - m[k]) * inv[k] * inv[k];
        }
        return acc / tot;
      },
    };
  }

  function reverseKl(mix, mu, sigma) {  // D(N(mu, sigma^2) || P)
    let e = 0;
    for (let j = 0; j < Z.length; j++) e += ZW[j] * mix.logp(mu + sigma * Z[j]);
    return -Math.log(sigma) - 0.5 * Math.log(2 * Math.PI * Math.E) - e;
  }

  function reverseFit(mix, mu0, sigma0, steps = 500, lr = 0.05) {
    let mu = mu0, rho = Math.log(sigma0);
    const m = [0, 0], v = [0, 0], b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (let t = 0; t < steps; t++) {
      const sigma = Math.exp(rho);
      let gm = 0, gz = 0;
      for (let j = 0; j < Z.length; j++) {
        const g = ZW[j] * mix.dlogp(mu + sigma * Z[j]);
        gm -= g;
        gz -= g * Z[j];
      }
      const grad = [gm, -1 + sigma * gz], scale = 1 - t / steps;
      const theta = [mu, rho];
      for (let i = 0; i < 2; i++) {
        m[i] = b1 * m[i] + (1 - b1) * grad[i];
        v[i] = b2 * v[i] + (1 - b2) * grad[i] * grad[i];
        const mHat = m[i] / (1 - b1 ** (t + 1)), vHat = v[i] / (1 - b2 ** (t + 1));
        theta[i] -= scale * lr * mHat / (Math.sqrt(vHat) + eps);
      }
      [mu, rho] = theta;
    }
    return [mu, Math.exp(rho)];
  }

  function fits(root) {
    const sds = (root.dataset.sds || "1,0.8").split(",").map(Number);
    const ui = frame(root, "Fitting one Gaussian Q to a two-mode target P: the forward and the reverse KL fit.");
    const sep = slider(ui.controls, "separation", "Distance between the modes of P", 0, 8, 0.1, Number(root.dataset.separation || 6), 1);
    const wLeft = slider(ui.controls, "weight", "Weight of the left mode", 0.05, 0.95, 0.05, Number(root.dataset.weight || 0.4), 2);
    const mu0 = slider(ui.controls, "start_mu", "Reverse fit starts at mean", -6, 6, 0.1, Number(root.dataset.startMu || 0.3), 1);
    const sd0 = slider(ui.controls, "start_sigma", "Reverse fit starts at standard deviation", 0.2, 5, 0.1, Number(root.dataset.startSigma || 0.5), 1);
    legend(ui.figure, [["kl-w-target", "target P"], ["kl-w-p", "forward fit, min D(P‖Q)"], ["kl-w-q", "reverse fit, min D(Q‖P)"]]);
    const fig = plot(ui.figure, "Target and fits", 170);
    const lines = [["fwd", "forward fit"], ["rev", "reverse fit"]].map(([key, label]) => {
      const line = el("span", {class: "kl-w-line"}, ui.out);
      el("span", {}, line, `${label}:`);
      return {mu: output(line, `${key}_mu`, "μ"), sigma: output(line, `${key}_sigma`, "σ"),
              forward: output(line, `${key}_forward`, "D(P‖Q)"), reverse: output(line, `${key}_reverse`, "D(Q‖P)")};
    });
    const n = 601, xs = Array.from({length: n}, (_, i) => -9 + 18 * i / (n - 1));
    const update = () => {
      const d = Number(sep.value), w = Number(wLeft.value), weights = [w, 1 - w], means = [-d / 2, d / 2];
      const mix = mixture(weights, means, sds);
      const mean = w * means[0] + (1 - w) * means[1];
      const variance = weights.reduce((a, wk, k) => a + wk * (sds[k] ** 2 + (means[k] - mean) ** 2), 0);
      // -H(P) on a grid spanning each mode to 10 sd, spacing min(sd)/10 (klcourse quadrature_grid)
      const lo = Math.min(...means.map((mk, k) => mk - 10 * sds[k])), hi = Math.max(...means.map((mk, k) => mk + 10 * sds[k]));
      const count = Math.ceil((hi - lo) * 10 / Math.min(...sds)) + 1, h = (hi - lo) / (count - 1);
      let negH = 0;
      for (let i = 0; i < count; i++) {
        const lp = mix.logp(lo + i * h);
        negH += (i === 0 || i === count - 1 ? 0.5 : 1) * h * Math.exp(lp) * lp;
      }
      const forwardKl = (mu, sigma) => Math.max(0, negH + 0.5 * Math.log(2 * Math.PI * sigma * sigma)
                                                 + (variance + (mean - mu) ** 2) / (2 * sigma * sigma));
      const fitted = [[mean, Math.sqrt(variance)], reverseFit(mix, Number(mu0.value), Number(sd0.value))];
      fitted.forEach(([mu, sigma], i) => {
        put(lines[i].mu, mu);
        put(lines[i].sigma, sigma);
        put(lines[i].forward, forwardKl(mu, sigma), "nats");
        put(lines[i].reverse, Math.max(0, reverseKl(mix, mu, sigma)), "nats");
      });
      const series = [{ys: xs.map((x) => Math.exp(mix.logp(x))), cls: "kl-w-none", fill: "kl-w-target"},
                      {ys: xs.map((x) => normalPdf(x, ...fitted[0])), cls: "kl-w-p"},
                      {ys: xs.map((x) => normalPdf(x, ...fitted[1])), cls: "kl-w-q"}];
      drawLines(fig, xs, series, {tick: 3});
      const start = svgEl("path", {class: "kl-w-start", d: ""}, fig.svg);
      const X = (x) => 12 + (x + 9) / 18 * (fig.width() - 20);
      const sx = X(Number(mu0.value)), sy = fig.height - 26;
      start.setAttribute("d", `M${sx},${sy - 10}l-6,10h12z`);
      fig.svg.setAttribute("aria-label", `Target P with modes at ${fmt(means[0])} and ${fmt(means[1])}; forward fit `
        + `mean ${fmt(fitted[0][0])}, sd ${fmt(fitted[0][1])}; reverse fit mean ${fmt(fitted[1][0])}, sd ${fmt(fitted[1][1])}`);
    };
    wire(root, [sep, wLeft, mu0, sd0], update);
  }

  const WIDGETS = {gaussians, discrete, temperature, estimators, fits};

  function start() {
    document.querySelectorAll("div.kl-widget[data-kl-widget]").forEach((root) => {
      const make = WIDGETS[root.dataset.klWidget];
      if (!make || root.dataset.klReady) return;
      make(root);
      root.hidden = false;
      root.dataset.klReady = "true";
    });
  }

  window.klWidgets = {start};  // builds containers added later (the tests add one)
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
