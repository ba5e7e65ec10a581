// The fleet page: every device the user may see, live over one ws/fleet/ socket, each with a
// badge of its worst active alarm's severity.
// Frames only mark devices dirty; the DOM changes once per animation frame, and only where
// a value changed, so a thousand devices reporting every second stay smooth.
import { LiveSocket, ago, element, formatValue, showBanner } from "./live.js";
import { AlarmSet } from "../alarms/alarmset.js";

const body = document.querySelector("#fleet tbody");
const search = document.getElementById("search");
const statusFilter = document.getElementById("status-filter");
const counts = document.getElementById("counts");
const empty = document.getElementById("empty");

const devices = new Map(); // id -> {id, name, online, lastSeen, latest: Map(key -> value), row, cells}
const alarms = new AlarmSet(); // each device's badge: the worst severity of its active alarms
const dirty = new Set();
let orderChanged = false;
let frameRequested = false;

function row(device) {
  const link = element("a", { href: `/devices/${encodeURIComponent(device.id)}/` });
  const cells = {
    name: link,
    badge: element("span", { class: "severity", hidden: "" }),
    status: element("span", { class: "status" }),
    seen: element("span", { class: "ago" }),
    values: element("div", { class: "values" }),
    spans: new Map(),
  };
  device.row = element(
    "tr", { "data-device": device.id },
    element("td", {}, link, " ", cells.badge, element("div", { class: "muted", text: device.id })),
    element("td", {}, cells.status), element("td", {}, cells.seen), element("td", {}, cells.values),
  );
  device.cells = cells;
}

function upsert(id, changes) {
  let device = devices.get(id);
  if (!device) {
    device = { id, name: id, online: false, lastSeen: null, latest: new Map() };
    devices.set(id, device);
    row(device);
    orderChanged = true;
  }
  Object.assign(device, changes);
  dirty.add(device);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(render);
  }
  return device;
}

function onFrame(frame) {
  if (frame.type === "snapshot") {
    const device = upsert(frame.device, { name: frame.name || frame.device, online: frame.online, lastSeen: frame.last_seen });
    device.latest = new Map(Object.entries(frame.latest).map(([key, latest]) => [key, latest.value]));
  } else if (frame.type === "readings") {
    const device = devices.get(frame.device);
    if (!device) return;
    for (const item of frame.items) for (const [key, value] of Object.entries(item.values)) device.latest.set(key, value);
    upsert(frame.device, { lastSeen: Math.max(device.lastSeen || 0, ...frame.items.map((item) => item.ts)) });
  } else if (frame.type === "status") {
    upsert(frame.device, { online: frame.online, lastSeen: frame.ts });
  } else if (frame.type === "alarm") {
    alarms.apply(frame.alarm);
    if (devices.has(frame.alarm.device)) upsert(frame.alarm.device, {});
  } else if (frame.type === "resync" || frame.type === "dropped") {
    loadAlarms(); // alarm frames may have been lost
  } else if (frame.type === "error") {
    if (frame.code === "forbidden" && frame.devices) forget(frame.devices); // access taken away meanwhile
    showBanner(`${frame.code}: ${frame.detail}`);
  }
}

function forget(ids) {
  for (const id of ids) {
    const device = devices.get(id);
    if (!device) continue;
    device.row.remove();
    devices.delete(id);
    dirty.delete(device);
  }
  updateCounts();
}

function render() {
  frameRequested = false;
  const now = Date.now();
  for (const device of dirty) {
    const { cells } = device;
    // The row is made before the snapshot's fields are copied in: the name comes here.
    const name = device.name || device.id;
    if (cells.name.textContent !== name) cells.name.textContent = name;
    const statusText = device.online ? "online" : "offline";
    if (cells.status.textContent !== statusText) {
      cells.status.textContent = statusText;
      cells.status.classList.toggle("online", device.online);
      device.row.dataset.status = statusText;
    }
    cells.seen.textContent = ago(device.lastSeen, now);
    const severity = alarms.worst(device.id);
    if ((device.row.dataset.severity || null) !== severity) {
      cells.badge.textContent = severity || "";
      cells.badge.className = `severity ${severity || ""}`;
      cells.badge.hidden = !severity;
      if (severity) device.row.dataset.severity = severity;
      else delete device.row.dataset.severity;
    }
    for (const [key, value] of device.latest) {
      let span = cells.spans.get(key);
      if (!span) {
        span = element("span", {}, element("b", { text: key }), element("output"));
        cells.spans.set(key, span);
        cells.values.append(span);
      }
      const text = formatValue(value);
      if (span.lastChild.textContent !== text) span.lastChild.textContent = text;
    }
    applyFilter(device);
  }
  dirty.clear();
  if (orderChanged) {
    orderChanged = false;
    const sorted = [...devices.values()].sort((a, b) => a.id.localeCompare(b.id));
    body.replaceChildren(...sorted.map((device) => device.row));
  }
  updateCounts();
}

function applyFilter(device) {
  const query = search.value.trim().toLowerCase();
  const wanted = statusFilter.value;
  const matches =
    (!query || device.id.toLowerCase().includes(query) || device.name.toLowerCase().includes(query)) &&
    (wanted === "all" || (wanted === "online") === device.online);
  if (device.row.hidden === matches) device.row.hidden = !matches;
}

function updateCounts() {
  let online = 0;
  let shown = 0;
  for (const device of devices.values()) {
    if (device.online) online += 1;
    if (!device.row.hidden) shown += 1;
  }
  counts.textContent = `${devices.size} devices, ${online} online${shown < devices.size ? `, ${shown} shown` : ""}`;
  empty.hidden = devices.size > 0;
}

// The active alarms, after every (re)connection: the socket's frames bring what changes next.
async function loadAlarms() {
  try {
    if (!(await alarms.reload({ query: "state=active" }))) return;
  } catch (error) {
    showBanner(`Could not load alarms: ${error.message}`);
    return;
  }
  for (const id of devices.keys()) upsert(id, {});
}

function refilter() {
  for (const device of devices.values()) applyFilter(device);
  updateCounts();
}

function tick() {
  const now = Date.now();
  for (const device of devices.values()) {
    if (device.row.hidden) continue;
    const text = ago(device.lastSeen, now);
    if (device.cells.seen.textContent !== text) device.cells.seen.textContent = text;
  }
}

search.addEventListener("input", refilter);
statusFilter.addEventListener("change", refilter);
setInterval(tick, 1000);

new LiveSocket("/ws/fleet/", {
  onFrame,
  onOpen: (socket) => {
    showBanner("");
    socket.send({ action: "subscribe", devices: "*" });
    updateCounts();
    loadAlarms();
  },
  onState: (state) => {
    if (state === "closed") showBanner("Connection lost; reconnecting…");
  },
});
