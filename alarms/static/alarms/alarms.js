// The alarms page: alarms on the devices the user may see, active first, newest first. Loaded
// over the API, then kept current by the `alarm` frames of a ws/fleet/ socket; loaded again
// after every reconnect and whenever the socket says frames may have been lost.
import { LiveSocket, ago, api, element, formatValue, showBanner } from "../telemetry/live.js";
import { AlarmSet, severityBadge } from "./alarmset.js";

const config = JSON.parse(document.getElementById("page-config").textContent);
const table = document.getElementById("alarms");
const body = table.querySelector("tbody");
const filters = document.getElementById("filters");
const counts = document.getElementById("counts");
const empty = document.getElementById("empty");
const CLEARED_SHOWN = 100; // the newest cleared alarms loaded; active ones are loaded all

const known = new AlarmSet();
const rows = new Map(); // alarm id -> tr

const mayClear = (alarm) => config.clearable === "*" || config.clearable.includes(alarm.device);

function wanted() {
  const form = new FormData(filters);
  return { state: form.get("state"), severity: form.get("severity"), device: form.get("device").trim() };
}

function matches(alarm, filter = wanted()) {
  return (!filter.state || alarm.state === filter.state)
    && (!filter.severity || alarm.severity === filter.severity)
    && (!filter.device || alarm.device === filter.device);
}

function row(alarm) {
  const acted = alarm.acknowledged ? `acknowledged by ${alarm.acknowledged_by ?? "someone since deleted"}` : "unacknowledged";
  const actions = element("td", { class: "actions" });
  if (!alarm.acknowledged) {
    const form = element("form", { class: "inline acknowledge" },
      element("input", { name: "comment", maxlength: "1000", placeholder: "Comment", "aria-label": "Comment" }),
      element("button", { type: "submit", class: "secondary", text: "Acknowledge" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(alarm.id, "acknowledge", { comment: form.elements.comment.value });
    });
    actions.append(form);
  }
  if (alarm.state === "active" && mayClear(alarm)) {
    const button = element("button", { type: "button", class: "danger", text: "Clear" });
    button.addEventListener("click", () => act(alarm.id, "clear", {}));
    actions.append(button);
  }
  return element("tr", { "data-alarm": alarm.id, "data-state": alarm.state, "data-acknowledged": String(alarm.acknowledged) },
    element("td", {}, severityBadge(alarm.severity)),
    element("td", { text: alarm.rule.name }),
    element("td", {}, element("a", { href: `/devices/${encodeURIComponent(alarm.device)}/`, text: alarm.device })),
    element("td", {}, element("span", { class: `state ${alarm.state}`, text: alarm.state }), element("div", { class: "muted", text: acted })),
    element("td", { class: "ago", "data-ts": alarm.raised_at, text: ago(alarm.raised_at), title: new Date(alarm.raised_at).toLocaleString() }),
    element("td", { text: `${alarm.count} × ${alarm.last_value === null ? "" : formatValue(alarm.last_value)}` }),
    actions,
  );
}

// Active first, then newest first.
const order = (a, b) => (a.state === b.state ? b.id - a.id : a.state === "active" ? -1 : 1);

// Shows `alarm` as it now stands: its row made afresh, unless an action on it is being typed.
function show(alarm) {
  const old = rows.get(alarm.id);
  if (!matches(alarm)) {
    old?.remove();
    rows.delete(alarm.id);
  } else if (!old || !old.contains(document.activeElement) || alarm.acknowledged || alarm.state === "cleared") {
    const fresh = row(alarm);
    rows.set(alarm.id, fresh);
    const next = [...known.alarms.values()].filter((other) => rows.has(other.id) && other.id !== alarm.id && order(alarm, other) < 0)
      .sort(order)[0];
    if (old) old.remove();
    body.insertBefore(fresh, next ? rows.get(next.id) : null);
  }
  updateCounts();
}

function updateCounts() {
  let active = 0;
  for (const id of rows.keys()) if (known.alarms.get(id).state === "active") active += 1;
  counts.textContent = `${active} active, ${rows.size - active} cleared shown`;
  empty.hidden = rows.size > 0;
}

async function act(id, action, payload) {
  try {
    show(known.apply(await api(`alarms/${id}/${action}`, { method: "POST", body: payload })));
    showBanner("");
  } catch (error) {
    showBanner(`Could not ${action} alarm ${id}: ${error.message}`);
    api(`alarms/${id}/`).then((alarm) => show(known.apply(alarm))).catch(() => {});
  }
}

// (Re)loads the alarms the filters ask for: every active one, and the newest cleared ones.
async function load() {
  const filter = wanted();
  const query = new URLSearchParams(Object.entries({ severity: filter.severity, device: filter.device }).filter(([, value]) => value));
  const requests = [];
  if (filter.state !== "cleared") requests.push({ query: `${query}&state=active` });
  if (filter.state !== "active") requests.push({ query: `${query}&state=cleared`, pageSize: CLEARED_SHOWN, pages: 1 });
  try {
    if (!(await known.reload(...requests))) return; // a newer load replaced this one
  } catch (error) {
    showBanner(`Could not load alarms: ${error.message}`);
    return;
  }
  rows.clear();
  const shown = [...known.alarms.values()].filter((alarm) => matches(alarm, filter)).sort(order);
  for (const alarm of shown) rows.set(alarm.id, row(alarm));
  body.replaceChildren(...rows.values());
  updateCounts();
}

function filtersChanged() {
  const filter = wanted();
  const query = new URLSearchParams(Object.entries(filter).filter(([, value]) => value));
  history.replaceState(null, "", `${location.pathname}${query.size ? `?${query}` : ""}`);
  load();
}

// The filters a link asked for, as in /alarms/?device=boiler-1&state=active.
const asked = new URLSearchParams(location.search);
for (const name of ["state", "severity", "device"]) if (asked.has(name)) filters.elements[name].value = asked.get(name);
filters.addEventListener("change", filtersChanged);
filters.addEventListener("submit", (event) => {
  event.preventDefault();
  filtersChanged();
});

let reload = null;
function reloadSoon() {
  clearTimeout(reload);
  reload = setTimeout(load, 200);
}

new LiveSocket("/ws/fleet/", {
  onFrame(frame) {
    if (frame.type === "alarm") show(known.apply(frame.alarm));
    else if (frame.type === "snapshot") table.dataset.live = "true"; // the socket watches the devices now
    else if (frame.type === "resync" || frame.type === "dropped") reloadSoon(); // alarm frames may be lost
    else if (frame.type === "error" && frame.code !== "forbidden") showBanner(`${frame.code}: ${frame.detail}`);
  },
  onOpen(socket) {
    showBanner("");
    socket.send({ action: "subscribe", devices: "*" });
    load();
  },
  onState(state) {
    if (state !== "open") table.dataset.live = "false";
    if (state === "closed") showBanner("Connection lost; reconnecting…");
  },
});

setInterval(() => {
  const now = Date.now();
  for (const cell of body.querySelectorAll("td[data-ts]")) cell.textContent = ago(Number(cell.dataset.ts), now);
}, 1000);
