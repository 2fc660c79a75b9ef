// cqrs-lab live view: polls /lab/api/pipeline, draws the figures, and sends the "Try it" commands.
// Plain JavaScript, no build step. Everything from the server or the user is written with textContent,
// never as HTML. The bearer token lives in this page's memory, and in sessionStorage only when asked.
"use strict";

(function () {
  const body = document.body;
  const PIPELINE_URL = body.dataset.pipelineUrl;
  const WRITE_API = body.dataset.writeApi;
  const POLL_MS = Number(body.dataset.pollIntervalMs) || 1000;
  const RATE_WINDOW_MS = 5000; // rates over the last few polls, steadier than from one poll to the next
  const SPARK_POINTS = 300; // five minutes of one-second polls
  const TOKEN_KEY = "cqrs-lab-token";

  const $ = (id) => document.getElementById(id);
  const snapshots = []; // {t, data}, newest last, RATE_WINDOW_MS of them
  const lagHistory = []; // {p50, p99}, newest last
  const myCorrelations = new Set();
  let lastPath;

  // ------------------------------------------------------------------------------------------ figures

  function setText(id, text) {
    const element = $(id);
    if (element.textContent !== text) element.textContent = text;
  }

  function number(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return Number(value).toLocaleString("en-US", {maximumFractionDigits: digits ?? 0});
  }

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    if (value < 1) return `${number(value * 1000, value < 0.01 ? 1 : 0)} ms`;
    return `${number(value, 2)} s`;
  }

  function bytes(value) {
    if (value === null || value === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${number(value, unit ? 1 : 0)} ${units[unit]}`;
  }

  function pick(data, path) {
    return path.reduce((value, key) => (value === null || value === undefined ? undefined : value[key]), data);
  }

  // Per second between the oldest snapshot of the window and this one; null when the process did not
  // answer in either, or its counter went down (it restarted).
  function rate(path) {
    const now = snapshots[snapshots.length - 1];
    const then = snapshots[0];
    if (!now || !then || now === then) return null;
    const a = pick(then.data, path);
    const b = pick(now.data, path);
    if (typeof a !== "number" || typeof b !== "number" || b < a) return null;
    return (b - a) / ((now.t - then.t) / 1000);
  }

  function perSecond(path) {
    const value = rate(path);
    return value === null ? "–" : `${number(value, value < 10 ? 1 : 0)}/s`;
  }

  function total(path, noun) {
    const value = pick(snapshots[snapshots.length - 1].data, path);
    return typeof value === "number" ? `${number(value)} ${noun}` : "";
  }

  function markUp(id, up) {
    const element = $(id);
    element.dataset.up = String(Boolean(up));
  }

  function render(data) {
    markUp("node-write", data.write_service.up);
    markUp("node-relay", data.relay.up);
    markUp("node-events", data.relay.up); // its backlog is the relay's figure
    markUp("node-broker", data.broker.up);
    markUp("node-projector", data.projector.up);
    markUp("node-read-db", data.read_db.up);
    markUp("node-replica", data.read_db.up); // the replica is a table of the read database

    setText("fig-commands", data.write_service.up ? perSecond(["write_service", "commands_total"]) : "down");
    setText("fig-commands-total", total(["write_service", "commands_total"], "in all"));
    $("fig-commands").dataset.total = data.write_service.commands_total ?? "";

    setText("fig-backlog", data.relay.up ? number(data.relay.outbox_backlog) : "relay down");
    setText("fig-backlog-age", data.relay.up && data.relay.outbox_oldest_age_seconds
      ? `oldest ${seconds(data.relay.outbox_oldest_age_seconds)}` : "");
    $("fig-backlog").dataset.value = data.relay.outbox_backlog ?? "";

    setText("fig-published", data.relay.up ? perSecond(["relay", "published_total"]) : "down");
    setText("fig-published-total", data.relay.broker_blocked ? "BLOCKED by the broker"
      : total(["relay", "published_total"], "in all"));
    $("fig-published").dataset.total = data.relay.published_total ?? "";

    setText("fig-queue-depth", data.broker.up ? number(data.broker.queue_depth) : "down");
    setText("fig-dlq-depth", data.broker.up ? `dead-letter queue ${number(data.broker.dead_letter_depth)}` : "");
    $("fig-queue-depth").dataset.value = data.broker.queue_depth ?? "";

    const applied = data.projector.applied_total || {};
    setText("fig-applied-broker", data.projector.up ? `broker ${perSecond(["projector", "applied_total", "broker"])}` : "down");
    setText("fig-applied-replication", data.projector.up
      ? `replication ${perSecond(["projector", "applied_total", "replication"])}` : "");
    setText("fig-dead-lettered", data.projector.up
      ? `${number(data.projector.dead_lettered_total)} dead-lettered` : "");
    $("fig-applied-broker").dataset.total = applied.broker ?? "";
    $("fig-applied-replication").dataset.total = applied.replication ?? "";
    $("fig-dead-lettered").dataset.total = data.projector.dead_lettered_total ?? "";

    const lag = data.read_db.lag;
    setText("fig-lag-p50", lag && lag.p50 !== null ? `p50 ${seconds(lag.p50)}` : (data.read_db.up ? "p50 –" : "down"));
    setText("fig-lag-p99", lag && lag.p99 !== null ? `p99 ${seconds(lag.p99)}` : "p99 –");
    setText("fig-lag-window", lag ? `${number(lag.events)} event${lag.events === 1 ? "" : "s"}, last ${lag.window_seconds} s` : "");

    setText("fig-slot", data.relay.up ? bytes(data.relay.slot_retained_bytes) : "–");
    setText("fig-replication-state", data.projector.up
      ? `applied ${number(applied.replication)} from here` : "");

    renderPath(data.active_path);
    renderEvents(data.read_db.recent_events || []);
    renderLag(lag);
  }

  function renderPath(path) {
    $("pipeline").dataset.activePath = path || "";
    if (path === lastPath) return; // the live region speaks only when the path changes
    lastPath = path;
    const line = $("status-line");
    line.className = `status path-${path || "unknown"}`;
    line.textContent = path === "broker" ? "Active path: broker (relay → RabbitMQ → projector)"
      : path === "replication" ? "Active path: replication (the broker is away; events come from the replica)"
        : "Active path: unknown (the projector does not answer)";
  }

  function renderEvents(events) {
    const tbody = $("events").tBodies[0];
    $("events-empty").hidden = events.length > 0;
    const rows = events.map((event) => {
      const row = document.createElement("tr");
      row.dataset.path = event.path || "pending";
      row.dataset.correlationId = event.correlation_id || "";
      if (event.correlation_id && myCorrelations.has(event.correlation_id)) row.className = "mine";
      const cells = [
        new Date(event.occurred_at).toLocaleTimeString("en-GB", {hour12: false}),
        event.type,
        `${event.aggregate_id.slice(0, 8)} · v${event.version}`,
        event.correlation_id || "",
        null,
        event.lag_seconds === null ? "" : seconds(event.lag_seconds),
      ];
      cells.forEach((text, index) => {
        const cell = document.createElement("td");
        if (index === 3) cell.className = "mono";
        if (text === null) {
          const badge = document.createElement("span");
          badge.className = `badge ${event.path || "pending"}`;
          badge.textContent = event.path || "not applied yet";
          cell.appendChild(badge);
        } else {
          cell.textContent = text;
        }
        row.appendChild(cell);
      });
      return row;
    });
    tbody.replaceChildren(...rows);
  }

  function renderLag(lag) {
    lagHistory.push({p50: lag ? lag.p50 : null, p99: lag ? lag.p99 : null});
    while (lagHistory.length > SPARK_POINTS) lagHistory.shift();
    const values = lagHistory.flatMap((point) => [point.p50, point.p99]).filter((v) => v !== null);
    const top = Math.max(0.01, ...values) * 1.1;
    // The chart fills up from the left during the first minute, then scrolls: five minutes at most.
    const span = Math.max(60, lagHistory.length) - 1;
    const x = (index) => (index * 900) / span;
    const y = (value) => 100 - (value / top) * 95;
    for (const key of ["p50", "p99"]) {
      const points = [];
      lagHistory.forEach((point, index) => {
        if (point[key] !== null) points.push(`${x(index).toFixed(1)},${y(point[key]).toFixed(1)}`);
      });
      $(`spark-${key}`).setAttribute("points", points.join(" "));
    }
    setText("spark-max", seconds(top));
  }

  // -------------------------------------------------------------------------------------------- polling

  async function poll() {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), Math.max(3000, POLL_MS * 3));
    try {
      const response = await fetch(PIPELINE_URL, {cache: "no-store", signal: controller.signal});
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      const t = Date.now();
      snapshots.push({t, data});
      while (snapshots.length > 1 && t - snapshots[0].t > RATE_WINDOW_MS) snapshots.shift();
      render(data);
      setText("updated-at", new Date(t).toLocaleTimeString("en-GB", {hour12: false}));
    } catch (error) {
      lastPath = undefined;
      const line = $("status-line");
      line.className = "status path-unknown";
      line.textContent = `read-service does not answer (${error.message}); retrying`;
    } finally {
      clearTimeout(timer);
      setTimeout(poll, POLL_MS);
    }
  }

  // ------------------------------------------------------------------------------------------- try it

  const tokenInput = $("token");
  const remember = $("remember-token");
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    tokenInput.value = saved;
    remember.checked = true;
  }
  function keepToken() {
    if (remember.checked && tokenInput.value) sessionStorage.setItem(TOKEN_KEY, tokenInput.value);
    else sessionStorage.removeItem(TOKEN_KEY);
  }
  tokenInput.addEventListener("change", keepToken);
  remember.addEventListener("change", keepToken);
  $("token-form").addEventListener("submit", (event) => event.preventDefault());
  setText("write-api-shown", WRITE_API);

  // crypto.randomUUID exists only in secure contexts (https, or a loopback address); getRandomValues everywhere.
  function uuid() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function correlationId() {
    const id = `lab-${uuid().slice(0, 13)}`;
    myCorrelations.add(id);
    return id;
  }

  function showResult(parts) {
    const box = $("result");
    box.replaceChildren(...parts.map(([text, className]) => {
      const span = document.createElement("span");
      span.textContent = text;
      if (className) span.className = className;
      return span;
    }));
  }

  async function command(path, payload) {
    const correlation = correlationId();
    const started = performance.now();
    let response;
    try {
      response = await fetch(`${WRITE_API}${path}`, {
        method: "POST",
        mode: "cors",
        headers: {
          "Authorization": `Bearer ${tokenInput.value}`,
          "Content-Type": "application/json",
          "Idempotency-Key": uuid(),
          "X-Correlation-ID": correlation,
        },
        body: JSON.stringify(payload),
      });
    } catch (error) {
      showResult([["the write API did not answer: ", "err"], [`${error.message} (${WRITE_API})`]]);
      return null;
    }
    const elapsed = performance.now() - started;
    const data = await response.json().catch(() => ({}));
    const summary = response.ok
      ? [[`${response.status} `, "ok"], [`${path} in ${number(elapsed)} ms · correlation id ${correlation}`]]
      : [[`${response.status} `, "err"], [`${data.title || ""}: ${data.detail || ""} · correlation id ${correlation}`]];
    showResult(summary);
    return response.ok ? data : null;
  }

  function addAccount(id, owner) {
    for (const select of [$("account"), $("target")]) {
      const option = document.createElement("option");
      option.value = id;
      option.textContent = `${owner} · ${id.slice(0, 8)}`;
      select.appendChild(option);
    }
    $("account").value = id;
    if ($("target").options.length > 1) {
      $("target").value = [...$("target").options].find((option) => option.value !== id).value;
    }
  }

  $("open-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const owner = $("owner").value.trim();
    const data = await command("/api/accounts", {owner, currency: "EUR"});
    if (data) addAccount(data.account_id, owner);
  });

  async function deposit() {
    const account = $("account").value;
    if (!account) return showResult([["Open an account first.", "err"]]);
    return command(`/api/accounts/${account}/deposit`, {amount: $("amount").value});
  }
  $("deposit").addEventListener("click", deposit);

  $("transfer").addEventListener("click", async () => {
    const from = $("account").value;
    const to = $("target").value;
    if (!from || !to || from === to) return showResult([["Open two accounts, pick two different ones.", "err"]]);
    await command("/api/transfers", {from_account: from, to_account: to, amount: $("amount").value});
  });

  async function read(account, query) {
    const started = performance.now();
    const response = await fetch(`/api/accounts/${account}${query}`, {cache: "no-store"});
    const data = await response.json().catch(() => ({}));
    return {status: response.status, version: data.version, ms: performance.now() - started};
  }

  $("stale-read").addEventListener("click", async () => {
    const written = await deposit();
    if (!written) return;
    const account = written.account_id;
    const [plain, waited] = await Promise.all([
      read(account, ""),
      read(account, `?min_version=${written.version}&wait_ms=5000`),
    ]);
    const verdict = (r) => (r.status === 200 && r.version >= written.version ? ["fresh", "ok"] : ["stale", "stale"]);
    const line = (label, r) => {
      const [word, className] = verdict(r);
      const paragraph = document.createElement("p");
      const strong = document.createElement("span");
      strong.className = className;
      strong.textContent = word;
      paragraph.append(`${label}: ${r.status}, version ${r.version ?? "none (not projected yet)"} in ${number(r.ms)} ms — `, strong);
      return paragraph;
    };
    const head = document.createElement("p");
    head.textContent = `The deposit made version ${written.version}.`;
    $("read-compare").replaceChildren(head, line("without min_version", plain),
      line(`with min_version=${written.version}`, waited));
    $("read-compare").dataset.plainVersion = plain.version ?? "";
    $("read-compare").dataset.waitedVersion = waited.version ?? "";
    $("read-compare").dataset.writtenVersion = written.version;
  });

  poll();
})();
