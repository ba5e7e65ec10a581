// The device page: history from the API, live frames from ws/devices/<id>/ appended to the
// charts, status, latest values, commands with their status as it changes, and alarms.
import { LiveSocket, ago, api, element, formatValue, showBanner } from "./live.js";
import { TimeChart } from "./chart.js";
import { DeviceAlarms } from "../alarms/device_alarms.js";

const config = JSON.parse(document.getElementById("page-config").textContent);
const apiPath = `devices/${encodeURIComponent(config.device)}`;
const BUCKETED_ABOVE_SECONDS = 3600;
const TARGET_BUCKETS = 1000;

const view = {
  span: 900000, // the live window, ms
  custom: null, // {from, to} when a fixed range is shown
  paused: false,
  loading: null, // live points that arrived while history was loading: key -> [[ts, value]]
  loads: 0,
};
const live = { seq: null, lastTs: null, online: false, lastSeen: null, resync: false };
const charts = new Map(); // key -> TimeChart
const latest = new Map(); // key -> {ts, value, row}
const commands = new Map(); // id -> list item
const alarms = new DeviceAlarms(config.device);

const statusBadge = document.getElementById("status");
const lastSeen = document.getElementById("last-seen");
const chartsBox = document.getElementById("charts");
const pauseButton = document.getElementById("pause");
const commandList = document.getElementById("commands");
const commandForm = document.getElementById("command-form");
const commandError = document.getElementById("command-error");

const following = () => !view.custom && !view.paused;

// Charts.

function chartFor(key) {
  let chart = charts.get(key);
  if (!chart) {
    const readout = element("span", { class: "readout" });
    const canvas = element("canvas", { "data-key": key, role: "img", "aria-label": `${key} over time` });
    const card = element("section", { class: "card chart", "data-key": key }, element("h2", {}, element("span", { text: key }), readout), canvas);
    const after = [...charts.keys()].sort().find((other) => other > key);
    chartsBox.insertBefore(card, after ? chartsBox.querySelector(`section[data-key="${CSS.escape(after)}"]`) : null);
    document.getElementById("no-charts").hidden = true;
    chart = new TimeChart(canvas, readout);
    charts.set(key, chart);
  }
  return chart;
}

function currentRange() {
  if (view.custom) return view.custom;
  const to = Date.now() + 1;
  return { from: to - view.span, to };
}

async function readings(from, to, bucket) {
  return api(`${apiPath}/readings?from=${Math.floor(from)}&to=${Math.ceil(to)}${bucket ? `&bucket=${bucket}` : ""}`);
}

// A bucket of a minute or more rounded up to whole minutes, of an hour or more to whole hours:
// the hub answers those from its stored rollups, fast over any range (docs/protocol.md).
function storedBucket(seconds) {
  const unit = seconds >= 3600 ? 3600 : seconds >= 60 ? 60 : 1;
  return Math.ceil(seconds / unit) * unit;
}

// (Re)loads the charts' history for the range shown; raw points for an hour or less, else buckets.
async function loadHistory() {
  const load = ++view.loads;
  view.loading = new Map();
  const { from, to } = currentRange();
  const seconds = (to - from) / 1000;
  const bucketFor = storedBucket(Math.max(1, Math.ceil(seconds / TARGET_BUCKETS)));
  let bucket = seconds > BUCKETED_ABOVE_SECONDS ? bucketFor : null;
  try {
    let data = await readings(from, to, bucket);
    if (!bucket && Object.values(data.series).some((series) => series.truncated)) {
      bucket = bucketFor;
      data = await readings(from, to, bucket);
    }
    if (load !== view.loads) return; // a newer load replaced this one
    for (const [key, series] of Object.entries(data.series)) {
      const rows = bucket ? series.points : series.points.filter((point) => typeof point[1] === "number");
      if (rows.length || charts.has(key)) chartFor(key).setRows(rows, Boolean(bucket));
    }
    for (const [key, chart] of charts) {
      if (!(key in data.series)) chart.setRows([], Boolean(bucket));
      chart.setRange(from, to);
      if (following()) chart.addPoints(view.loading.get(key) || []);
    }
    showBanner("");
  } catch (error) {
    showBanner(`Could not load history: ${error.message}`);
  } finally {
    if (load === view.loads) view.loading = null;
  }
}

// Fetches raw points in [from, to) that the socket did not deliver, and adds them to the charts.
async function fillGap(from, to) {
  try {
    const data = await readings(from, to, null);
    for (const [key, series] of Object.entries(data.series)) {
      const points = series.points.filter((point) => typeof point[1] === "number");
      if (points.length) chartFor(key).addPoints(points);
    }
  } catch (error) {
    showBanner(`Could not fetch missed readings: ${error.message}`);
  }
}

function slide() {
  if (!following()) return;
  const { from, to } = currentRange();
  for (const chart of charts.values()) {
    chart.setRange(from, to);
    chart.forgetBefore(from - 60000);
  }
}

// Live frames.

function setLatest(key, ts, value) {
  let entry = latest.get(key);
  if (entry && entry.ts > ts) return;
  if (!entry) {
    const row = element("tr", { "data-key": key }, element("th", { text: key }), element("td"), element("td", { class: "ago" }));
    const after = [...latest.keys()].sort().find((other) => other > key);
    const body = document.querySelector("#latest tbody");
    body.insertBefore(row, after ? latest.get(after).row : null);
    entry = { row };
    latest.set(key, entry);
  }
  Object.assign(entry, { ts, value });
  entry.row.children[1].textContent = formatValue(value);
  entry.row.children[2].textContent = ago(ts);
}

function setStatus(online, seenAt) {
  live.online = online;
  if (seenAt != null) live.lastSeen = Math.max(live.lastSeen || 0, seenAt);
  statusBadge.textContent = online ? "online" : "offline";
  statusBadge.classList.toggle("online", online);
  lastSeen.textContent = `last seen ${ago(live.lastSeen)}`;
}

function onSnapshot(frame) {
  setStatus(frame.online, frame.last_seen);
  for (const [key, { ts, value }] of Object.entries(frame.latest)) setLatest(key, ts, value);
  // A jump in seq, or a resync after a break in the live stream: fetch what was missed.
  const missed = live.seq !== null && (frame.seq > live.seq || live.resync);
  live.resync = false;
  live.seq = frame.seq;
  if (missed && following()) fillGap(live.lastTs === null ? currentRange().from : live.lastTs + 1, Date.now() + 1);
  if (view.loads === 0) loadHistory();
}

function onReadings(frame) {
  const first = Math.min(...frame.items.map((item) => item.ts));
  if (live.seq !== null && frame.seq > live.seq + 1 && following()) {
    fillGap(live.lastTs === null ? currentRange().from : live.lastTs + 1, first); // frames were lost
  }
  live.seq = frame.seq;
  for (const item of frame.items) {
    live.lastTs = Math.max(live.lastTs || 0, item.ts);
    for (const [key, value] of Object.entries(item.values)) {
      setLatest(key, item.ts, value);
      if (typeof value !== "number" || !following()) continue;
      if (view.loading) {
        if (!view.loading.has(key)) view.loading.set(key, []);
        view.loading.get(key).push([item.ts, value]);
      }
      chartFor(key).addPoints([[item.ts, value]]);
    }
  }
  setStatus(live.online, live.lastTs);
}

// Commands.

const STATUS_ORDER = { pending: 0, sent: 1, succeeded: 2, failed: 2, expired: 2 };

function showCommand(frame) {
  let item = commands.get(frame.id);
  if (item && STATUS_ORDER[item.dataset.status] > STATUS_ORDER[frame.status]) return; // an older view of it
  if (!item) {
    item = element("li", { "data-command": frame.id });
    commands.set(frame.id, item);
    commandList.prepend(item);
  }
  // Failed and expired commands say why in `error`.
  const outcome = frame.status === "failed" || frame.status === "expired" ? frame.error : frame.result;
  item.dataset.status = frame.status;
  item.replaceChildren(
    element("span", { class: `state ${frame.status}`, text: frame.status }),
    element("strong", { text: frame.name }), " ",
    element("code", { text: JSON.stringify(frame.params) }),
    element("div", { class: "muted", text: `${new Date(frame.created).toLocaleString()} · ttl ${frame.ttl} s · timeout ${frame.timeout} s` }),
    ...(outcome == null ? [] : [element("code", { class: "outcome", text: typeof outcome === "string" ? outcome : JSON.stringify(outcome) })]),
  );
}

function showCommandError(text) {
  if (!commandError) return showBanner(text);
  commandError.textContent = text;
  commandError.hidden = !text;
}

const socket = new LiveSocket(`/ws/devices/${encodeURIComponent(config.device)}/`, {
  onFrame(frame) {
    if (frame.type === "snapshot") onSnapshot(frame);
    else if (frame.type === "readings") onReadings(frame);
    else if (frame.type === "status") setStatus(frame.online, frame.ts);
    else if (frame.type === "resync") {
      live.resync = true; // a fresh snapshot follows
      alarms.load(); // alarm frames may have been lost
    }
    else if (frame.type === "alarm") alarms.show(frame.alarm);
    else if (frame.type === "command") showCommand(frame);
    else if (frame.type === "error") (frame.code === "forbidden" || frame.code === "bad_frame" ? showCommandError : showBanner)(`${frame.code}: ${frame.detail}`);
  },
  onOpen: () => {
    showBanner("");
    alarms.load();
  },
  onState(state) {
    if (state === "closed") showBanner("Connection lost; reconnecting…");
    if (state === "forbidden") showBanner("You may not watch this device.");
  },
});

commandForm?.addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(commandForm);
  let params;
  try {
    params = JSON.parse(form.get("params") || "{}");
    if (params === null || typeof params !== "object" || Array.isArray(params)) throw new Error("params must be a JSON object");
  } catch (error) {
    showCommandError(`Params: ${error.message}`);
    return;
  }
  const sent = socket.send({
    action: "command", name: form.get("name"), params, ttl: Number(form.get("ttl")), timeout: Number(form.get("timeout")),
  });
  showCommandError(sent ? "" : "Not connected; try again in a moment.");
});

// Ranges, pause and resume.

for (const button of document.querySelectorAll("[data-range]")) {
  button.addEventListener("click", () => {
    view.span = Number(button.dataset.range) * 1000;
    view.custom = null;
    for (const other of document.querySelectorAll("[data-range]")) other.setAttribute("aria-pressed", String(other === button));
    loadHistory();
  });
}

document.getElementById("custom-range").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const from = new Date(form.get("from")).getTime();
  const to = new Date(form.get("to")).getTime();
  if (!(from < to)) return showBanner("The range must start before it ends.");
  view.custom = { from, to };
  for (const button of document.querySelectorAll("[data-range]")) button.setAttribute("aria-pressed", "false");
  loadHistory();
});

pauseButton.addEventListener("click", () => {
  view.paused = !view.paused;
  pauseButton.textContent = view.paused ? "Resume" : "Pause";
  pauseButton.setAttribute("aria-pressed", String(view.paused));
  if (!view.paused) loadHistory();
});

api(`${apiPath}/commands/?limit=20`)
  .then((list) => list.reverse().forEach(showCommand))
  .catch((error) => showBanner(`Could not load commands: ${error.message}`));

setInterval(() => {
  slide();
  lastSeen.textContent = `last seen ${ago(live.lastSeen)}`;
  for (const entry of latest.values()) entry.row.children[2].textContent = ago(entry.ts);
}, 250);
