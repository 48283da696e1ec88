/* The live market page.
 *
 * Instruments come from ListInstruments, their prices from the Server-Sent Events of /v1/subscribe
 * (EventSource reconnects by itself and sends Last-Event-ID; the server answers with a fresh snapshot).
 * Events only record prices; one animation frame then writes the table and the chart, however many
 * events came in between. The form asks GetPrices for one whole path and draws it, or its bars.
 * Plain script, no build step; uPlot (vendor/) draws the charts. Nothing is fetched from elsewhere.
 */
"use strict";

(() => {
  const API = "/marketdata.v1.MarketDataService/";
  const MAX_POINTS = 1200; // ticks kept per instrument for the live chart (2 minutes at 0.1 s a tick)
  const FLASH_MS = 650;
  const RETRY_MAX_S = 30; // longest wait before a new EventSource once the browser gave up on one
  const DEFAULT_START = "2026-01-02T14:30:00Z";
  const TOKENS_NEEDED =
    "This server asks for bearer tokens (--auth-tokens). A browser page cannot send them with its " +
    "requests, so the live page works only with a server started without --auth-tokens.";

  // Parameters of each model, with the proto's (example) values as defaults: [JSON name, label, value].
  const MODELS = {
    gbm: [
      ["startPrice", "Start price", 70],
      ["mu", "Drift per year", 0.05],
      ["sigma", "Volatility per √year", 0.3],
    ],
    arithmetic: [
      ["startPrice", "Start value", 70],
      ["mu", "Drift, price units per year", 0.05],
      ["sigma", "Volatility, price units per √year", 0.3],
    ],
    merton: [
      ["startPrice", "Start price", 70],
      ["mu", "Total return per year", 0.05],
      ["sigma", "Diffusion volatility", 0.3],
      ["jumpIntensity", "Jumps per year", 5],
      ["jumpMean", "Mean jump (log)", -0.02],
      ["jumpStdev", "Jump stdev (log)", 0.05],
    ],
    heston: [
      ["startPrice", "Start price", 70],
      ["mu", "Drift per year", 0.05],
      ["v0", "Initial variance", 0.09],
      ["kappa", "Reversion speed κ", 2],
      ["theta", "Long-run variance θ", 0.09],
      ["xi", "Vol of variance ξ", 0.3],
      ["rho", "Correlation ρ", -0.7],
    ],
    ornsteinUhlenbeck: [
      ["start", "Start value", 70],
      ["mean", "Long-run level", 70],
      ["kappa", "Reversion speed κ", 2],
      ["sigma", "Volatility per √year", 0.3],
    ],
  };

  const $ = (id) => document.getElementById(id);
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue(name).trim();
  const COLORS = {
    text: color("--text"),
    muted: color("--muted"),
    line: color("--line"),
    accent: color("--accent"),
    up: color("--up"),
    down: color("--down"),
    upFlash: color("--up-flash"),
    downFlash: color("--down-flash"),
    font: color("--font"),
  };

  // ---- numbers and times ----

  /** Decimals that show every multiple of a tick size (at least 2, so prices read as prices). */
  function decimalsOf(tickSize) {
    if (!(tickSize > 0)) return 2;
    for (let d = 0; d <= 10; d += 1) {
      const scaled = tickSize * 10 ** d;
      if (Math.abs(Math.round(scaled) - scaled) < 1e-6) return Math.max(2, d);
    }
    return 10;
  }

  function signed(value, decimals) {
    const text = Math.abs(value).toFixed(decimals);
    if (Number(text) === 0) return text;
    return (value > 0 ? "+" : "\u2212") + text;
  }

  /** Seconds since the Unix epoch of an RFC 3339 time as protobuf writes it (up to 9 decimals). */
  function secondsOf(rfc3339) {
    const m = /^(.+T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$/.exec(rfc3339 || "");
    if (!m) return NaN;
    return Date.parse(m[1] + m[3]) / 1000 + (m[2] ? Number("0" + m[2]) : 0);
  }

  /** Seconds since the epoch of a count of nanoseconds sent as a decimal string (int64 in JSON). */
  const nanosToSeconds = (nanos) => Number(nanos) / 1e9;

  const utcDate = (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");

  // ---- the server's API ----

  /** POST a Connect unary call; resolves to {ok, status, body} and never throws for an HTTP error. */
  async function call(method, request, signal) {
    const response = await fetch(API + method, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(request),
      signal,
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    return { ok: response.ok, status: response.status, body };
  }

  function errorText(reply) {
    if (reply.status === 401) return TOKENS_NEEDED;
    if (reply.body && typeof reply.body.message === "string" && reply.body.message) return reply.body.message;
    return `The server answered HTTP ${reply.status}.`;
  }

  function showNotice(text) {
    const notice = $("notice");
    notice.textContent = text;
    notice.hidden = !text;
  }

  // ---- charts ----

  const charts = new Map(); // container element -> uPlot
  const chartHeight = () => (window.innerWidth < 520 ? 220 : 300);

  function axes(yDecimals) {
    const common = {
      stroke: COLORS.muted,
      font: `12px ${COLORS.font}`,
      grid: { stroke: COLORS.line, width: 1 },
      ticks: { stroke: COLORS.line, width: 1 },
    };
    return [
      { ...common },
      {
        ...common,
        size: 62,
        values: (u, splits) => splits.map((v) => (v == null ? "" : v.toFixed(yDecimals()))),
      },
    ];
  }

  function makeChart(container, options, data) {
    const old = charts.get(container);
    if (old) old.destroy();
    const chart = new uPlot(
      { width: Math.max(container.clientWidth, 200), height: chartHeight(), tzDate: utcDate, ...options },
      data,
      container,
    );
    charts.set(container, chart);
    return chart;
  }

  let lastWidth = 0;
  const resizer = new ResizeObserver(() => {
    const width = document.documentElement.clientWidth;
    if (width === lastWidth) return;
    lastWidth = width;
    for (const [container, chart] of charts) {
      chart.setSize({ width: Math.max(container.clientWidth, 200), height: chartHeight() });
    }
  });
  resizer.observe(document.body);

  /** Draws OHLC candles from series 1-4 (open, high, low, close), which draw no lines themselves. */
  function candles() {
    return {
      hooks: {
        draw: (u) => {
          const [xs, open, high, low, close] = u.data;
          const n = xs.length;
          if (!n) return;
          const ctx = u.ctx;
          const step = u.bbox.width / Math.max(n, 1);
          const body = Math.max(1, Math.min(step * 0.7, 18 * devicePixelRatio));
          const wick = Math.max(1, Math.round(devicePixelRatio));
          ctx.save();
          ctx.beginPath();
          ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
          ctx.clip();
          for (let i = 0; i < n; i += 1) {
            const x = Math.round(u.valToPos(xs[i], "x", true));
            const yo = u.valToPos(open[i], "y", true);
            const yc = u.valToPos(close[i], "y", true);
            const yh = u.valToPos(high[i], "y", true);
            const yl = u.valToPos(low[i], "y", true);
            ctx.fillStyle = close[i] >= open[i] ? COLORS.up : COLORS.down;
            ctx.fillRect(x - Math.floor(wick / 2), yh, wick, Math.max(1, yl - yh));
            ctx.fillRect(x - body / 2, Math.min(yo, yc), body, Math.max(1, Math.abs(yc - yo)));
          }
          ctx.restore();
        },
      },
    };
  }

  // ---- the live market ----

  const market = {
    instruments: new Map(), // symbol -> {info, decimals, row, cells, times, prices, last, shown}
    selected: null,
    sequence: null,
    exchangeTime: "",
    dirty: new Set(),
    frame: 0,
    source: null,
    retry: 1,
  };

  function buildRows(instruments) {
    const body = $("quote-rows");
    body.textContent = "";
    for (const info of instruments) {
      const row = document.createElement("tr");
      row.dataset.symbol = info.symbol;
      row.tabIndex = 0;
      const cell = (cls, text) => {
        const td = document.createElement("td");
        td.className = cls;
        td.textContent = text;
        row.appendChild(td);
        return td;
      };
      cell("symbol", info.symbol);
      cell("model", info.model || "gbm");
      const cells = {
        price: cell("price right num", "-"),
        change: cell("change right num", "-"),
        percent: cell("percent right num", "-"),
      };
      body.appendChild(row);
      market.instruments.set(info.symbol, {
        info,
        decimals: decimalsOf(info.tickSize),
        row,
        cells,
        times: [],
        prices: [],
        last: null,
        shown: null,
      });
      row.addEventListener("click", () => select(info.symbol));
      row.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          select(info.symbol);
        }
      });
    }
  }

  function liveChart() {
    const inst = market.instruments.get(market.selected);
    const decimals = () => (inst ? inst.decimals : 2);
    return makeChart(
      $("live-chart"),
      {
        scales: { x: { time: true } },
        axes: axes(decimals),
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
        series: [
          { value: "{HH}:{mm}:{ss}" },
          {
            label: market.selected || "",
            stroke: COLORS.accent,
            width: 1.5,
            fill: "rgba(88, 166, 255, 0.08)",
            points: { show: false },
            value: (u, v) => (v == null ? "-" : v.toFixed(decimals())),
          },
        ],
      },
      [inst ? inst.times : [], inst ? inst.prices : []],
    );
  }

  function select(symbol) {
    if (!market.instruments.has(symbol)) return;
    market.selected = symbol;
    for (const [name, inst] of market.instruments) inst.row.classList.toggle("selected", name === symbol);
    $("live-symbol").textContent = symbol;
    liveChart();
    showLiveCount(market.instruments.get(symbol));
  }

  /** What the live chart holds, for a reader of the page's markup (and its tests). */
  function showLiveCount(inst) {
    const chart = $("live-chart");
    chart.dataset.points = String(inst.prices.length);
    chart.dataset.last = inst.prices.length ? String(inst.prices[inst.prices.length - 1]) : "";
  }

  /** Records one snapshot or update; the next animation frame shows it. */
  function record(message, kind) {
    const payload = message[kind] || {};
    const sequence = Number(message.sequence || 0); // 0 is left out of the JSON, as any default
    const time = secondsOf(message.exchangeTime);
    if (kind === "snapshot" && market.sequence !== null && sequence < market.sequence) {
      // Another server (or a restarted one): its history does not continue ours.
      for (const inst of market.instruments.values()) {
        inst.times.length = 0;
        inst.prices.length = 0;
      }
    }
    for (const quote of payload.prices || []) {
      const inst = market.instruments.get(quote.symbol);
      if (!inst) continue;
      const price = quote.price || 0;
      inst.last = price;
      const times = inst.times;
      const end = times.length - 1;
      if (Number.isFinite(time) && (end < 0 || time > times[end])) {
        times.push(time);
        inst.prices.push(price);
        if (times.length > MAX_POINTS) {
          times.splice(0, times.length - MAX_POINTS);
          inst.prices.splice(0, inst.prices.length - MAX_POINTS);
        }
      } else if (time === times[end]) {
        inst.prices[end] = price; // the chart's x must rise: a tick stamped at the same instant replaces
      }
      market.dirty.add(inst);
    }
    market.sequence = sequence;
    market.exchangeTime = Number.isFinite(time) ? new Date(time * 1000).toISOString().slice(11, 23) : "";
    if (!market.frame) market.frame = requestAnimationFrame(paint);
  }

  function flash(cell, up) {
    cell.animate([{ backgroundColor: up ? COLORS.upFlash : COLORS.downFlash }, { backgroundColor: "transparent" }], {
      duration: FLASH_MS,
      easing: "ease-out",
    });
  }

  /** Writes every change recorded since the last frame to the page, once. */
  function paint() {
    market.frame = 0;
    let selectedChanged = false;
    for (const inst of market.dirty) {
      const { cells, decimals, info } = inst;
      const price = inst.last;
      if (inst.shown !== null && price !== inst.shown) flash(cells.price, price > inst.shown);
      inst.shown = price;
      cells.price.textContent = price.toFixed(decimals);
      cells.price.dataset.price = String(price);
      const change = price - info.startPrice;
      const direction = change > 0 ? "up" : change < 0 ? "down" : "";
      cells.change.textContent = signed(change, decimals);
      cells.percent.textContent = info.startPrice ? `${signed((change / info.startPrice) * 100, 2)}%` : "-";
      for (const cell of [cells.change, cells.percent]) {
        cell.classList.toggle("up", direction === "up");
        cell.classList.toggle("down", direction === "down");
      }
      if (info.symbol === market.selected) selectedChanged = true;
    }
    market.dirty.clear();
    if (selectedChanged) {
      const inst = market.instruments.get(market.selected);
      const chart = charts.get($("live-chart"));
      if (chart) chart.setData([inst.times, inst.prices]);
      showLiveCount(inst);
    }
    $("sequence").textContent = market.sequence === null ? "-" : String(market.sequence);
    $("exchange-time").textContent = market.exchangeTime ? `${market.exchangeTime} UTC` : "";
  }

  function setStatus(state, text) {
    $("status").dataset.state = state;
    $("status-text").textContent = text || state;
  }

  function subscribe() {
    const source = new EventSource("/v1/subscribe");
    market.source = source;
    source.addEventListener("open", () => {
      market.retry = 1;
      setStatus("connected");
    });
    for (const kind of ["snapshot", "update"]) {
      source.addEventListener(kind, (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return;
        }
        if (kind === "snapshot") showNotice("");
        record(message, kind);
      });
    }
    source.addEventListener("error", (event) => {
      if (typeof event.data === "string") {
        // The server ended the stream with an error event; EventSource will connect again.
        let message = event.data;
        try {
          message = JSON.parse(event.data).message || message;
        } catch {
          /* shown as sent */
        }
        showNotice(`The server ended the live stream: ${message}`);
        return;
      }
      if (source.readyState === EventSource.CLOSED) {
        // Refused outright (an HTTP error): EventSource does not retry that, so wait and try anew.
        const wait = market.retry;
        market.retry = Math.min(RETRY_MAX_S, market.retry * 2);
        setStatus("closed", `disconnected, retrying in ${wait} s`);
        setTimeout(() => {
          if (market.source === source) subscribe();
        }, wait * 1000);
      } else {
        setStatus("reconnecting");
      }
    });
  }

  async function startMarket() {
    let reply;
    try {
      reply = await call("ListInstruments", {});
    } catch {
      setStatus("closed", "offline");
      showNotice("The server could not be reached. Reload the page when it is back.");
      return;
    }
    if (!reply.ok) {
      setStatus("closed", reply.status === 401 ? "needs tokens" : "refused");
      showNotice(errorText(reply));
      return;
    }
    const instruments = reply.body.instruments || [];
    buildRows(instruments);
    const tick = reply.body.wallSecondsPerTick;
    if (tick) $("market-title").title = `The market ticks every ${tick} s`;
    if (instruments.length) select(instruments[0].symbol);
    subscribe();
  }

  // ---- the path form ----

  function showParams() {
    const model = $("model").value;
    const holder = $("model-params");
    holder.textContent = "";
    for (const [key, label, value] of MODELS[model]) {
      const field = document.createElement("label");
      field.className = "field";
      field.append(label);
      const input = document.createElement("input");
      input.type = "number";
      input.step = "any";
      input.inputMode = "decimal";
      input.id = `param-${key}`;
      input.name = key;
      input.value = String(value);
      field.appendChild(input);
      holder.appendChild(field);
    }
  }

  const numberIn = (input) => (input.value.trim() === "" ? null : Number(input.value));

  /** The PathRequest in protobuf JSON; empty fields are left out, so the server judges them. */
  function pathRequest() {
    const model = $("model").value;
    const params = {};
    for (const [key] of MODELS[model]) {
      const value = numberIn($(`param-${key}`));
      if (value !== null) params[key] = value;
    }
    const request = { [model]: params };
    const periods = numberIn($("periods"));
    if (periods !== null) request.periods = periods;
    const delta = numberIn($("delta"));
    if (delta !== null) request.delta = delta;
    const seed = $("seed").value.trim();
    if (seed) request.seed = seed; // uint64 travels as a string in protobuf JSON
    const start = $("start-time").value.trim();
    if (start) request.time = { startTime: start };
    const bars = $("bar-interval").value;
    if (bars) request.barInterval = bars;
    return request;
  }

  function showPathError(text) {
    const box = $("path-error");
    box.textContent = text;
    box.hidden = !text;
  }

  const pathValue = (v) => v.toFixed(4);

  function setSummary(id, value) {
    const el = $(id);
    el.textContent = value === null ? "-" : pathValue(value);
    el.dataset.value = value === null ? "" : String(value);
  }

  function drawPath(request, reply) {
    const container = $("path-chart");
    const bars = reply.bars;
    const seed = String(reply.seed ?? "0"); // a seed of 0 is a default, so left out of the JSON
    $("path-seed").textContent = seed;
    container.dataset.seed = seed;
    const model = $("model").selectedOptions[0].textContent;
    if (bars && bars.startTime && bars.startTime.length) {
      const xs = bars.startTime.map(nanosToSeconds);
      const n = xs.length;
      const pad = n > 1 ? (xs[n - 1] - xs[0]) / (n - 1) / 2 : 60;
      const hidden = { paths: () => null, points: { show: false }, value: (u, v) => (v == null ? "-" : pathValue(v)) };
      makeChart(
        container,
        {
          scales: { x: { time: true, range: (u, min, max) => [min - pad, max + pad] } },
          axes: axes(() => 2),
          legend: { live: true },
          series: [
            {},
            { ...hidden, label: "Open", stroke: COLORS.muted },
            { ...hidden, label: "High", stroke: COLORS.up },
            { ...hidden, label: "Low", stroke: COLORS.down },
            { ...hidden, label: "Close", stroke: COLORS.accent },
          ],
          plugins: [candles()],
        },
        [xs, bars.open || [], bars.high || [], bars.low || [], bars.close || []],
      );
      container.dataset.mode = "bars";
      container.dataset.points = String(n);
      $("path-count").textContent = `${n} bars`;
      setSummary("path-first", (bars.open || [null])[0]);
      setSummary("path-last", (bars.close || [null])[n - 1] ?? null);
      $("path-caption").textContent = `${model}: ${request.barInterval} bars`;
    } else {
      const prices = reply.prices || [];
      const n = prices.length;
      const timed = Array.isArray(reply.timestamps) && reply.timestamps.length === n;
      const xs = timed ? reply.timestamps.map(nanosToSeconds) : prices.map((_, i) => i);
      makeChart(
        container,
        {
          scales: { x: { time: timed } },
          axes: axes(() => 2),
          legend: { live: true },
          series: [
            timed ? {} : { label: "Period" },
            {
              label: "Value",
              stroke: COLORS.accent,
              width: 1.5,
              points: { show: false },
              value: (u, v) => (v == null ? "-" : pathValue(v)),
            },
          ],
        },
        [xs, prices],
      );
      container.dataset.mode = "path";
      container.dataset.points = String(n);
      $("path-count").textContent = String(n);
      setSummary("path-first", n ? prices[0] : null);
      setSummary("path-last", n ? prices[n - 1] : null);
      $("path-caption").textContent = `${model}: ${n} values`;
    }
    container.dataset.generation = String(Number(container.dataset.generation || 0) + 1);
  }

  let pending = null;

  async function submitPath(event) {
    event.preventDefault();
    if (pending) pending.abort();
    const controller = new AbortController();
    pending = controller;
    const request = pathRequest();
    const button = $("path-submit");
    button.disabled = true;
    try {
      const reply = await call("GetPrices", request, controller.signal);
      if (controller !== pending) return;
      if (!reply.ok) {
        showPathError(errorText(reply));
        return;
      }
      showPathError("");
      drawPath(request, reply.body || {});
    } catch (error) {
      if (error.name !== "AbortError") showPathError("The server could not be reached.");
    } finally {
      if (controller === pending) {
        pending = null;
        button.disabled = false;
      }
    }
  }

  function startForm() {
    showParams();
    $("model").addEventListener("change", showParams);
    $("bar-interval").addEventListener("change", () => {
      const start = $("start-time");
      if ($("bar-interval").value && !start.value.trim()) start.value = DEFAULT_START;
    });
    $("path-form").addEventListener("submit", submitPath);
  }

  startForm();
  startMarket();
})();
