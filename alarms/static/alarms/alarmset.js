// What the pages that show alarms share: how a newer view of an alarm replaces an older one,
// which severity is worst, and the badge that shows it.
//
// Alarm frames cross an at-most-once channel layer, and a page also loads alarms over the API
// while frames arrive, so views of one alarm come in any order. An alarm only moves forward
// (active to cleared, unacknowledged to acknowledged, its count up), so merging two views by
// taking the further of each gives the newest whatever the order they came in.
import { api, element } from "../telemetry/live.js";

export const SEVERITIES = ["critical", "major", "minor", "warning", "info"]; // worst first

export function mergeAlarm(known, fresh) {
  if (!known) return fresh;
  const newer = fresh.count >= known.count ? fresh : known;
  return {
    ...newer,
    state: known.state === "cleared" || fresh.state === "cleared" ? "cleared" : "active",
    cleared_at: fresh.cleared_at ?? known.cleared_at,
    acknowledged: known.acknowledged || fresh.acknowledged,
    acknowledged_by: fresh.acknowledged_by ?? known.acknowledged_by,
  };
}

export function severityBadge(severity) {
  return element("span", { class: `severity ${severity}`, text: severity });
}

// Every alarm one page knows of, by id; the active ones give each device its worst severity.
export class AlarmSet {
  constructor() {
    this.alarms = new Map();
    this.byDevice = new Map(); // device id -> ids of its alarms
    this.arrived = null; // the views taken in while a reload is under way
    this.loads = 0;
  }

  // Takes in a view of an alarm (from a frame or the API); returns the alarm as it now stands.
  apply(alarm) {
    this.arrived?.push(alarm);
    const merged = mergeAlarm(this.alarms.get(alarm.id), alarm);
    this.alarms.set(alarm.id, merged);
    if (!this.byDevice.has(alarm.device)) this.byDevice.set(alarm.device, new Set());
    this.byDevice.get(alarm.device).add(alarm.id);
    return merged;
  }

  worst(deviceId) {
    let worst = null;
    for (const id of this.byDevice.get(deviceId) || []) {
      const alarm = this.alarms.get(id);
      if (alarm.state !== "active") continue;
      if (worst === null || SEVERITIES.indexOf(alarm.severity) < SEVERITIES.indexOf(worst)) worst = alarm.severity;
    }
    return worst;
  }

  // Replaces what the set holds with what the API's alarm list finds for each of `requests`
  // ({query, pageSize, pages}: newest first, page by page), keeping what frames brought
  // meanwhile. Returns false if a newer reload replaced this one.
  async reload(...requests) {
    const load = ++this.loads;
    const arrived = (this.arrived = []);
    const fresh = new AlarmSet();
    for (const { query, pageSize = 500, pages = Infinity } of requests) {
      let before = null;
      for (let page = 0; page < pages; page += 1) {
        const found = await api(`alarms/?${query}&limit=${pageSize}${before === null ? "" : `&before=${before}`}`);
        found.forEach((alarm) => fresh.apply(alarm));
        if (found.length < pageSize) break;
        before = found[found.length - 1].id;
      }
    }
    if (load !== this.loads) return false;
    arrived.forEach((alarm) => fresh.apply(alarm));
    this.arrived = null;
    this.alarms = fresh.alarms;
    this.byDevice = fresh.byDevice;
    return true;
  }
}
