// The ringtrain dashboard: polls the JSON endpoints beside this page and
// draws what they say. Read-only; no library, nothing loaded from elsewhere.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const COLORS = ["#1f6feb", "#e8590c", "#2f9e44", "#9c36b5"];
  const POLL_MS = 1000;

  const state = {
    records: [], next: 0, mark: "",
    status: null, generations: [], checkpoints: null, job: null,
    x: "progress", skew: 0, polls: 0, updates: 0,
  };

  // el builds an element; children are nodes or text (never parsed as HTML).
  function el(tag, attrs, ...children) {
    const svg = ["svg", "circle", "line", "path", "text", "rect", "g", "title"].includes(tag);
    const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.setAttribute("class", v);
      else if (k.startsWith("data-")) e.setAttribute(k, String(v));
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const finite = (v) => typeof v === "number" && Number.isFinite(v);
  function num(v, digits = 4) {
    if (!finite(v)) return "–";
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4) return Math.round(v).toLocaleString("en-US");
    if (a >= 100) return v.toFixed(0);
    return String(+v.toPrecision(digits));
  }
  const pct = (v) => (finite(v) ? (100 * v).toFixed(2) + "%" : "–");
  function bytes(n) {
    if (!finite(n) || n <= 0) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + u[i];
  }
  function clock(iso) {
    const t = new Date(iso);
    if (isNaN(t)) return "";
    return t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  function ago(iso) {
    const t = Date.parse(iso);
    if (isNaN(t) || t <= 0) return "–";
    const s = Math.max(0, (Date.now() + state.skew - t) / 1000);
    if (s < 60) return s.toFixed(1) + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }

  async function get(path, asText) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    // The server's clock, for "last seen" ages; its Date header has whole
    // seconds, so only a larger difference is taken as skew.
    const d = Date.parse(r.headers.get("Date") || "");
    if (!isNaN(d)) {
      const skew = d - Date.now();
      state.skew = Math.abs(skew) > 2000 ? skew : 0;
    }
    return asText ? r.text() : r.json();
  }

  // ---- status: header, summary cards, ring ----

  function ringStats(st) {
    const ws = (st.workers || []).filter((w) => w.rank >= 0 && w.stats);
    if (!ws.length) return null;
    const mean = (f) => ws.reduce((a, w) => a + (w.stats[f] || 0), 0) / ws.length;
    return { loss: mean("loss"), accuracy: mean("accuracy"), lr: ws[0].stats.lr };
  }

  function renderStatus(st) {
    state.status = st;
    // "ringtrain" is the name of a job that has none.
    const name = st.job && st.job !== "ringtrain" ? st.job : "";
    $("job-name").textContent = [name, st.model && st.dataset ? st.model + " on " + st.dataset : ""].filter(Boolean).join(" · ");
    document.title = "ringtrain · " + (st.job || "") + " · " + (st.state || "");
    const badge = $("state");
    badge.textContent = st.state || "unknown";
    badge.className = "badge " + (st.state || "");
    $("reason").textContent = st.reason || "";

    const rs = ringStats(st);
    const epochs = st.epochs || 0;
    const epoch = Math.min((st.epoch || 0) + 1, epochs || Infinity);
    const cards = [
      ["step", num(st.step || 0)],
      ["epoch", epochs ? epoch + " / " + epochs : String(epoch)],
      ["images/s", num(st.images_per_second || 0)],
      ["learning rate", rs ? num(rs.lr) : "–"],
      ["train loss", rs ? num(rs.loss) : "–"],
      ["train accuracy", rs ? pct(rs.accuracy) : "–"],
      ["test accuracy", st.last_eval ? pct(st.last_eval.accuracy) + " (epoch " + (st.last_eval.epoch + 1) + ")" : "–"],
      ["test loss", st.last_eval ? num(st.last_eval.loss) : "–"],
    ];
    if (st.coordinator) {
      cards.push(["generation", String(st.generation || 0)]);
      cards.push(["ring", (st.ring || []).length + " of " + (st.min_workers === st.max_workers ? st.max_workers : st.min_workers + "–" + st.max_workers) + " workers"]);
      cards.push(["coordinator", st.coordinator]);
    }
    cards.push(["codec", st.codec || "fp32"]);
    cards.push(["last checkpoint", st.last_checkpoint || "none yet"]);
    $("summary").replaceChildren(...cards.map(([k, v]) => el("div", { class: "card" }, el("div", { class: "k" }, k), el("div", { class: "v" }, v))));
    renderWorkers(st);
    renderRing(st);
  }

  // Known fields of a worker's status and stats; any other field the
  // status carries (per-phase times, a straggler flag, …) gets a column.
  const KNOWN_WORKER = new Set(["name", "rank", "generation", "step", "last_seen", "stats"]);
  const KNOWN_STATS = new Set(["epoch", "loss", "accuracy", "images_per_second", "lr", "checksum", "checksum_step"]);
  const isStraggler = (w) => !!(w.straggler || (w.stats && w.stats.straggler));

  function extraLabel(k) {
    return k.replace(/_seconds$/, " (ms)").replace(/_/g, " ");
  }
  function extraValue(k, v) {
    if (k === "straggler" && v && typeof v === "object") {
      return (v.phase || "slow") + (finite(v.factor) ? " ×" + v.factor.toFixed(2) : "");
    }
    if (typeof v === "boolean") return v ? "yes" : "";
    if (finite(v)) return k.endsWith("_seconds") ? (1000 * v).toFixed(1) : num(v);
    if (v === null || v === undefined) return "";
    return typeof v === "object" ? JSON.stringify(v) : String(v);
  }

  function renderWorkers(st) {
    const ws = st.workers || [];
    const extras = [];
    const add = (k) => { if (!extras.includes(k)) extras.push(k); };
    for (const w of ws) {
      for (const k of Object.keys(w)) if (!KNOWN_WORKER.has(k)) add(k);
      for (const k of Object.keys(w.stats || {})) if (!KNOWN_STATS.has(k)) add("stats." + k);
    }
    const cols = ["worker", "rank", "gen", "step", "epoch", "loss", "accuracy", "images/s", "lr", "seen"]
      .concat(extras.map((k) => extraLabel(k.replace(/^stats\./, ""))));
    const table = $("workers");
    table.tHead.replaceChildren(el("tr", null, cols.map((c) => el("th", null, c))));
    table.tBodies[0].replaceChildren(...ws.map((w) => {
      const s = w.stats || {};
      const strag = isStraggler(w);
      const cls = [w.rank < 0 ? "out" : "", strag ? "straggler" : ""].filter(Boolean).join(" ");
      const cells = [
        el("td", null, w.name, strag ? el("span", { class: "flag", title: "straggler" }, " ⚑") : null),
        w.rank >= 0 ? String(w.rank) : "–",
        w.generation ? String(w.generation) : "–",
        num(w.step || 0),
        s.epoch !== undefined ? String(s.epoch + 1) : "–",
        num(s.loss), pct(s.accuracy), num(s.images_per_second), num(s.lr),
        ago(w.last_seen),
      ].concat(extras.map((k) => (k.startsWith("stats.") ? extraValue(k.slice(6), s[k.slice(6)]) : extraValue(k, w[k]))));
      return el("tr", { class: cls || null, "data-worker": w.name, "data-rank": w.rank },
        cells.map((c) => (c instanceof Node ? c : el("td", null, c))));
    }));
    table.dataset.count = String(ws.length);
  }

  function renderRing(st) {
    const svg = $("ring-svg");
    const ring = st.ring || [];
    const byName = new Map((st.workers || []).map((w) => [w.name, w]));
    const cx = 120, cy = 120, R = 80;
    const n = ring.length;
    const r = n ? Math.max(7, Math.min(22, 240 / n)) : 0;
    const parts = [];
    if (n > 1) parts.push(el("circle", { class: "edge", cx, cy, r: R }));
    const at = (i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(n, 1);
      return [cx + R * Math.cos(a), cy + R * Math.sin(a)];
    };
    ring.forEach((name, i) => {
      const [x, y] = n === 1 ? [cx, cy] : at(i);
      const w = byName.get(name);
      const cls = "node" + (w && isStraggler(w) ? " straggler" : "") + (!w ? " out" : "");
      const g = el("g", { "data-worker": name },
        el("title", null, name + " · rank " + i + (w ? " · step " + w.step : "") + (w && isStraggler(w) ? " · straggler: " + extraValue("straggler", w.straggler) : "")),
        el("circle", { class: cls, cx: x.toFixed(1), cy: y.toFixed(1), r: r.toFixed(1) }));
      if (r >= 10) g.append(el("text", { class: "in", x: x.toFixed(1), y: (y + 4).toFixed(1) }, String(i)));
      if (n <= 12) {
        const ly = n === 1 ? y + r + 14 : y + (y < cy - 1 ? -r - 5 : r + 14);
        g.append(el("text", { x: x.toFixed(1), y: ly.toFixed(1) }, name));
      }
      parts.push(g);
    });
    if (n > 1) {
      parts.push(el("text", { class: "center", x: cx, y: cy - 2 }, st.coordinator ? "generation " + (st.generation || 0) : ""));
      parts.push(el("text", { class: "center", x: cx, y: cy + 14 }, n + " workers"));
    } else if (n === 0) {
      parts.push(el("text", { class: "center", x: cx, y: cy }, "no ring yet"));
    }
    svg.replaceChildren(...parts);
  }

  // ---- records: the curves ----

  function chartSeries() {
    const X = state.x === "step" ? (r) => r.step : (r) => r.progress;
    const train = state.records.filter((r) => r.kind === "train");
    const evals = state.records.filter((r) => r.kind === "eval");
    const pts = (rs, y) => rs.map((r) => [X(r), y(r)]).filter((p) => finite(p[0]) && finite(p[1]));
    return {
      loss: [
        { name: "train", pts: pts(train, (r) => r.loss) },
        { name: "test", pts: pts(evals, (r) => r.loss), dots: true },
      ],
      accuracy: [
        { name: "train", pts: pts(train, (r) => 100 * r.accuracy), unit: "%" },
        { name: "test", pts: pts(evals, (r) => 100 * r.accuracy), dots: true, unit: "%" },
      ],
      ips: [{ name: "images/s", pts: pts(train.filter((r) => r.images_per_second > 0), (r) => r.images_per_second) }],
      lr: [{ name: "learning rate", pts: pts(train, (r) => r.lr || 0) }],
    };
  }

  function niceTicks(lo, hi, n) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const raw = span / Math.max(1, n);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / mag;
    const step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }
  function tickLabel(v) {
    const a = Math.abs(v);
    if (a >= 1e4) return (v / 1000).toFixed(0) + "k";
    if (a >= 1000) return (v / 1000).toFixed(1) + "k";
    return String(+v.toPrecision(3));
  }

  function drawChart(id, series, opt) {
    const cv = $("chart-" + id);
    const total = series.reduce((a, s) => a + s.pts.length, 0);
    cv.dataset.points = String(total);
    cv.dataset.series = series.map((s) => s.pts.length).join(",");
    const legend = $("legend-" + id);
    legend.replaceChildren(...series.map((s, i) => {
      const last = s.pts.length ? s.pts[s.pts.length - 1][1] : undefined;
      return el("span", null, el("span", { class: "sw c" + i }), s.name + (last !== undefined ? " " + num(last) + (s.unit || "") : ""));
    }));
    const dpr = window.devicePixelRatio || 1;
    const w = cv.clientWidth, h = cv.clientHeight;
    if (!w || !h) return;
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr);
      cv.height = Math.round(h * dpr);
    }
    const ctx = cv.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const muted = css.getPropertyValue("--muted").trim() || "#777";
    const grid = css.getPropertyValue("--grid").trim() || "#eee";
    ctx.font = "11px system-ui, sans-serif";
    if (!total) {
      ctx.fillStyle = muted;
      ctx.textAlign = "center";
      ctx.fillText("waiting for the first records…", w / 2, h / 2);
      return;
    }
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of series) for (const [x, y] of s.pts) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x);
      y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    if (opt.zero) y0 = Math.min(0, y0);
    if (x0 === x1) { x0 -= state.x === "step" ? 1 : 0.05; x1 += state.x === "step" ? 1 : 0.05; }
    if (y0 === y1) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
    else { const d = (y1 - y0) * 0.06; y1 += d; if (!opt.zero || y0 < 0) y0 -= d; }
    if (opt.max !== undefined) y1 = Math.min(y1, opt.max);
    const L = 46, R = 10, T = 8, B = 22;
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (w - L - R);
    const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (h - T - B);
    ctx.lineWidth = 1;
    ctx.strokeStyle = grid;
    ctx.fillStyle = muted;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const v of niceTicks(y0, y1, Math.max(2, Math.floor((h - T - B) / 40)))) {
      const y = Math.round(sy(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(w - R, y); ctx.stroke();
      ctx.fillText(tickLabel(v), L - 5, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const v of niceTicks(x0, x1, Math.max(2, Math.floor((w - L - R) / 70)))) {
      const x = Math.round(sx(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, T); ctx.lineTo(x, h - B); ctx.stroke();
      ctx.fillText(tickLabel(v), x, h - B + 5);
    }
    // The x axis's name, under the y axis's labels.
    ctx.textAlign = "left";
    ctx.fillText(state.x === "step" ? "step" : "epoch", 2, h - B + 5);
    series.forEach((s, i) => {
      ctx.strokeStyle = ctx.fillStyle = COLORS[i % COLORS.length];
      ctx.lineWidth = 1.8;
      ctx.beginPath();
      s.pts.forEach(([x, y], j) => (j ? ctx.lineTo(sx(x), sy(y)) : ctx.moveTo(sx(x), sy(y))));
      ctx.stroke();
      if (s.dots || s.pts.length === 1) {
        for (const [x, y] of s.pts) {
          ctx.beginPath(); ctx.arc(sx(x), sy(y), 3, 0, 2 * Math.PI); ctx.fill();
        }
      }
    });
  }

  function drawCharts() {
    const s = chartSeries();
    drawChart("loss", s.loss, { zero: true });
    drawChart("accuracy", s.accuracy, { max: 100 });
    drawChart("ips", s.ips, { zero: true });
    drawChart("lr", s.lr, { zero: true });
  }

  // ---- generations ----

  function causeText(c) {
    return c.kind + (c.worker ? " " + c.worker : "") + (c.detail ? " (" + c.detail + ")" : "");
  }

  function renderGenerations(evs) {
    state.generations = evs;
    const list = $("generations");
    const st = state.status;
    $("gens-empty").hidden = !(evs.length === 0 && st && !st.coordinator);
    list.replaceChildren(...evs.slice().reverse().map((ev) => {
      const ring = ev.ring || [];
      const head = el("div", { class: "head" },
        el("span", { class: "num" }, (ev.paused ? "paused #" : "#") + ev.number),
        el("span", { class: "muted" }, clock(ev.time)),
        el("span", null, ev.paused ? ring.length + " waiting: " + ring.join(" ") : ring.length + " workers: " + ring.join(" ")));
      const from = ev.restore ? "restore " + ev.restore : ev.source ? "from " + ev.source + "'s state" : "initial parameters";
      const detail = ev.paused
        ? (ev.reason || "the ring stopped")
        : "resume at step " + ev.resume_step + " (epoch " + (ev.epoch + 1) + ", " + ev.consumed + " samples in) · " + from;
      const causes = ev.causes || [];
      return el("li", {
        class: ev.paused ? "paused" : null,
        "data-number": ev.number,
        "data-paused": ev.paused ? "true" : "false",
        "data-causes": causes.map((c) => c.kind + ":" + (c.worker || "")).join(" "),
        "data-ring": ring.join(" "),
      }, head,
      el("div", { class: "chips" }, causes.map((c) => el("span", { class: "chip " + c.kind }, causeText(c)))),
      el("div", { class: "detail" }, detail));
    }));
    list.dataset.count = String(evs.length);
    list.dataset.last = String(evs.reduce((m, ev) => Math.max(m, ev.paused ? 0 : ev.number), 0));
    renderTimeline();
  }

  function renderTimeline() {
    const svg = $("gen-timeline");
    const evs = state.generations;
    svg.hidden = evs.length === 0;
    if (!evs.length) return;
    const W = Math.max(200, Math.round(svg.clientWidth || 1000)), H = 40;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    const done = state.status && state.status.state === "done";
    const t0 = Date.parse(evs[0].time);
    const tEnd = Math.max(done ? Date.parse(evs[evs.length - 1].time) + 1000 : Date.now() + state.skew, t0 + 1000);
    const X = (t) => ((t - t0) / (tEnd - t0)) * W;
    const parts = evs.map((ev, i) => {
      const a = X(Date.parse(ev.time));
      const b = i + 1 < evs.length ? X(Date.parse(evs[i + 1].time)) : W;
      const wd = Math.max(2, b - a);
      const g = el("g", null,
        el("title", null, (ev.paused ? "paused #" : "generation #") + ev.number + " from " + clock(ev.time) + ": " + (ev.causes || []).map(causeText).join(", ")),
        el("rect", { class: "seg " + (ev.paused ? "pause" : "g" + (ev.number % 4)), x: a.toFixed(1), y: 4, width: wd.toFixed(1), height: H - 8, rx: 3 }));
      if (wd > 24) g.append(el("text", { x: (a + 5).toFixed(1), y: H / 2 + 5 }, (ev.paused ? "‖" : "") + ev.number));
      return g;
    });
    svg.replaceChildren(...parts);
  }

  // ---- checkpoints and the job file ----

  function renderCheckpoints(c) {
    state.checkpoints = c;
    $("store").textContent = c.store || "–";
    const list = (c.checkpoints || []).slice().reverse();
    const tb = $("checkpoints").tBodies[0];
    tb.replaceChildren(...list.map((k) => el("tr", { "data-name": k.name },
      el("td", null, k.name), el("td", null, num(k.step)),
      el("td", null, String(k.epoch + (k.position ? 1 : 0)) + (k.position ? " (" + k.position + " in)" : " (end)")),
      el("td", null, k.generation ? String(k.generation) : "–"), el("td", null, k.world_size ? String(k.world_size) : "–"),
      el("td", null, bytes(k.bytes)), el("td", null, k.test_accuracy ? pct(k.test_accuracy) : "–"),
      el("td", null, k.train_loss ? num(k.train_loss) : "–"), el("td", null, k.created ? clock(k.created) : "–"))));
    if (!list.length) tb.replaceChildren(el("tr", null, el("td", { colspan: 9, class: "muted" }, "none committed yet")));
    $("checkpoints").dataset.count = String(list.length);
  }

  // ---- polling ----

  async function pollStatus() { renderStatus(await get("api/status")); }

  async function pollRecords() {
    const d = await get("api/records?after=" + state.next + "&mark=" + encodeURIComponent(state.mark));
    if (d.reset) state.records = [];
    state.records.push(...(d.records || []));
    state.next = d.next;
    state.mark = d.mark;
    if (d.reset || (d.records || []).length) drawCharts();
  }

  async function pollGenerations() { renderGenerations((await get("api/generations")).generations || []); }
  async function pollCheckpoints() { renderCheckpoints(await get("api/checkpoints")); }
  async function pollJob() {
    state.job = await get("api/job", true);
    $("jobfile").textContent = state.job;
  }

  async function poll() {
    const n = state.polls++;
    const calls = [pollStatus(), pollRecords()];
    if (n % 2 === 0) calls.push(pollGenerations());
    // Checkpoints every 5 s, and as soon as the status names a new one.
    const newest = state.checkpoints && (state.checkpoints.checkpoints || []).slice(-1)[0];
    const named = state.status && state.status.last_checkpoint;
    if (n % 5 === 0 || (named && (!newest || newest.name !== named))) calls.push(pollCheckpoints());
    if (state.job === null || n % 30 === 0) calls.push(pollJob());
    const res = await Promise.allSettled(calls);
    const failed = res.find((r) => r.status === "rejected");
    const conn = $("conn");
    conn.hidden = !failed;
    if (failed) {
      conn.textContent = "not answering (the run may have ended): " + failed.reason.message;
    } else {
      document.body.dataset.updates = String(++state.updates);
    }
    if (n % 2 === 1) renderTimeline();
    setTimeout(poll, POLL_MS);
  }

  for (const b of document.querySelectorAll(".toggle button")) {
    b.addEventListener("click", () => {
      state.x = b.dataset.x;
      for (const o of document.querySelectorAll(".toggle button")) o.setAttribute("aria-pressed", String(o === b));
      drawCharts();
    });
  }
  let pending = false;
  window.addEventListener("resize", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; drawCharts(); renderTimeline(); });
  });
  drawCharts();
  poll();
})();
