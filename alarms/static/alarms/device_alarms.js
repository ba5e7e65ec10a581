// The device page's alarms and alarm rules: its newest alarms, kept current by the `alarm`
// frames of the page's socket, and the rules that cover it, which its owner and staff may
// add to, change and delete here.
import { ago, api, element, formatValue, showBanner } from "../telemetry/live.js";
import { AlarmSet, severityBadge } from "./alarmset.js";

const SHOWN = 20;
const KIND_FIELDS = { threshold: ["key", "op", "value", "clear_value", "for_seconds"], silence: ["key", "seconds"], offline: ["seconds"] };
const NUMBERS = ["value", "clear_value", "for_seconds", "seconds"];

function describe(rule) {
  if (rule.kind === "threshold") {
    const clears = rule.clear_value === null ? "" : `, clears at ${formatValue(rule.clear_value)}`;
    return `${rule.key} ${rule.op} ${formatValue(rule.value)}${clears}${rule.for_seconds ? ` for ${rule.for_seconds} s` : ""}`;
  }
  if (rule.kind === "silence") return `no ${rule.key ?? "reading"} for ${rule.seconds} s`;
  return `offline for ${rule.seconds} s`;
}

export class DeviceAlarms {
  constructor(deviceId) {
    this.device = deviceId;
    this.alarms = new AlarmSet();
    this.list = document.getElementById("device-alarms");
    this.rules = document.getElementById("rules");
    this.form = document.getElementById("rule-form");
    this.editing = null; // the id of the rule the form changes; null: the form adds one
    if (this.form) this.setUpForm();
  }

  // On every (re)connection of the page's socket: frames bring what changes next.
  async load() {
    try {
      await this.alarms.reload({ query: `device=${encodeURIComponent(this.device)}`, pageSize: SHOWN, pages: 1 });
      this.render();
      await this.loadRules();
    } catch (error) {
      showBanner(`Could not load alarms: ${error.message}`);
    }
  }

  show(alarm) {
    if (alarm.device !== this.device) return;
    this.alarms.apply(alarm);
    this.render();
  }

  render() {
    const shown = [...this.alarms.alarms.values()]
      .sort((a, b) => (a.state === b.state ? b.id - a.id : a.state === "active" ? -1 : 1))
      .slice(0, SHOWN);
    this.list.replaceChildren(...shown.map((alarm) => element(
      "li", { "data-alarm": alarm.id, "data-state": alarm.state },
      severityBadge(alarm.severity), " ", element("strong", { text: alarm.rule.name }), " ",
      element("span", { class: `state ${alarm.state}`, text: alarm.state }),
      element("div", { class: "muted", text: [
        `raised ${ago(alarm.raised_at)}`, `${alarm.count} × ${formatValue(alarm.last_value ?? "")}`,
        alarm.acknowledged ? `acknowledged by ${alarm.acknowledged_by ?? "someone since deleted"}` : "unacknowledged",
      ].join(" · ") }),
    )));
    document.getElementById("no-alarms").hidden = shown.length > 0;
  }

  async loadRules() {
    const rules = await api(`alarm-rules/?device=${encodeURIComponent(this.device)}&limit=1000`);
    this.rules.replaceChildren(...rules.map((rule) => this.ruleItem(rule)));
    document.getElementById("no-rules").hidden = rules.length > 0;
  }

  ruleItem(rule) {
    const item = element("li", { "data-rule": rule.id },
      severityBadge(rule.severity), " ", element("strong", { text: rule.name }),
      element("div", { class: "muted", text: `${describe(rule)}${rule.devices.length ? "" : " · every device of its owner's"}` }));
    if (rule.can_edit && this.form) {
      const edit = element("button", { type: "button", class: "secondary", text: "Edit" });
      edit.addEventListener("click", () => this.edit(rule));
      const remove = element("button", { type: "button", class: "secondary", text: "Delete" });
      remove.addEventListener("click", () => this.remove(rule));
      item.prepend(element("span", { class: "actions" }, edit, remove));
    }
    return item;
  }

  setUpForm() {
    const { form } = this;
    form.elements.kind.addEventListener("change", () => this.showKindFields());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    document.getElementById("rule-cancel").addEventListener("click", () => this.edit(null));
    this.showKindFields();
  }

  showKindFields() {
    const kind = this.form.elements.kind.value;
    for (const label of this.form.querySelectorAll("[data-kinds]")) label.hidden = !label.dataset.kinds.split(" ").includes(kind);
  }

  // Fills the form with `rule` to change it, or empties it to add one (null).
  edit(rule) {
    const { elements } = this.form;
    this.editing = rule?.id ?? null;
    this.form.reset();
    if (rule) {
      for (const name of ["name", "kind", "severity", ...KIND_FIELDS[rule.kind]]) elements[name].value = rule[name] ?? "";
    }
    document.getElementById("rule-form-title").textContent = rule ? `Change rule ${rule.name}` : "New rule";
    document.getElementById("rule-save").textContent = rule ? "Save rule" : "Add rule";
    document.getElementById("rule-cancel").hidden = !rule;
    this.showKindFields();
    this.error("");
  }

  async save() {
    const { elements } = this.form;
    const kind = elements.kind.value;
    const body = { name: elements.name.value, kind, severity: elements.severity.value };
    for (const name of KIND_FIELDS[kind]) {
      const text = elements[name].value.trim();
      body[name] = text === "" ? null : NUMBERS.includes(name) ? Number(text) : text;
    }
    if (kind === "threshold" && body.for_seconds === null) body.for_seconds = 0;
    if (this.editing === null) body.devices = [this.device];
    try {
      if (this.editing === null) await api("alarm-rules/", { method: "POST", body });
      else await api(`alarm-rules/${this.editing}/`, { method: "PATCH", body });
      this.edit(null);
      await this.loadRules();
    } catch (error) {
      this.error(error.message);
    }
  }

  async remove(rule) {
    if (!confirm(`Delete the rule ${rule.name} and its alarms?`)) return;
    try {
      await api(`alarm-rules/${rule.id}/`, { method: "DELETE" });
      if (this.editing === rule.id) this.edit(null);
      await this.loadRules();
    } catch (error) {
      this.error(error.message);
    }
  }

  error(text) {
    const box = document.getElementById("rule-error");
    box.textContent = text;
    box.hidden = !text;
  }
}
