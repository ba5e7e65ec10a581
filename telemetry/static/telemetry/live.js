// What the dashboard pages share: the live socket, the API, and how values and times read.

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 30000;

// A dashboard websocket that reconnects with jittered backoff. `onOpen` runs on every
// (re)connection, so a page subscribes there; `onFrame` gets each parsed server frame.
export class LiveSocket {
  constructor(path, { onFrame, onOpen = () => {}, onState = () => {} }) {
    this.url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
    this.onFrame = onFrame;
    this.onOpen = onOpen;
    this.onState = onState;
    this.attempt = 0;
    this.connect();
  }

  connect() {
    this.socket = new WebSocket(this.url);
    this.socket.onopen = () => {
      this.attempt = 0;
      this.onState("open");
      this.onOpen(this);
    };
    this.socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "batch") frame.frames.forEach(this.onFrame);
      else this.onFrame(frame);
    };
    this.socket.onclose = (event) => {
      if (event.code === 4401) {
        location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname)}`);
        return;
      }
      if (event.code === 4403) {
        this.onState("forbidden");
        return;
      }
      this.onState("closed");
      const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.attempt++);
      setTimeout(() => this.connect(), ceiling / 2 + Math.random() * ceiling / 2);
    };
  }

  send(frame) {
    if (this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// Calls the hub's API; throws an Error carrying the API's reason on a 4xx or 5xx.
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    headers["X-CSRFToken"] = csrfToken();
  }
  const response = await fetch(`/api/${path}`, { method, headers, body: body && JSON.stringify(body), credentials: "same-origin" });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => `${d.where}: ${d.problem}`).join("; ") : data.detail;
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return data;
}

export function formatValue(value) {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(Math.abs(value) < 10 ? 2 : 1);
  if (typeof value === "boolean") return value ? "on" : "off";
  return String(value);
}

export function ago(ms, now = Date.now()) {
  if (ms == null) return "never";
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// Shows a message in the page's #banner, or hides it when `text` is empty.
export function showBanner(text) {
  const banner = document.getElementById("banner");
  banner.textContent = text;
  banner.hidden = !text;
}
