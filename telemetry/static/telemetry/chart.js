// A small, fast time-series chart on a canvas: one line per chart, or a min/max band with its
// mean line for bucketed history. Points are kept sorted by time; drawing happens at most once
// per animation frame, and a line of more points than pixels is drawn as a min/max per column.

const PAD = { left: 52, right: 10, top: 8, bottom: 22 };

function niceStep(span, count) {
  const rough = span / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const scaled = rough / power;
  return power * (scaled < 1.5 ? 1 : scaled < 3.5 ? 2 : scaled < 7.5 ? 5 : 10);
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map((s) => s * 1000);

function timeLabel(ts, step) {
  const date = new Date(ts);
  const two = (n) => String(n).padStart(2, "0");
  if (step >= 86400000) return `${date.getMonth() + 1}/${date.getDate()}`;
  const clock = `${two(date.getHours())}:${two(date.getMinutes())}`;
  return step < 60000 ? `${clock}:${two(date.getSeconds())}` : clock;
}

// Index of the first point with ts >= value.
function lowerBound(ts, value) {
  let low = 0;
  let high = ts.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (ts[mid] < value) low = mid + 1;
    else high = mid;
  }
  return low;
}

export class TimeChart {
  constructor(canvas, readout) {
    this.canvas = canvas;
    this.readout = readout;
    this.ts = [];
    this.mean = [];
    this.low = null; // set for bucketed data
    this.high = null;
    this.from = Date.now() - 900000;
    this.to = Date.now();
    this.hover = null;
    this.drawRequested = false;
    canvas.addEventListener("mousemove", (event) => this.pointAt(event.offsetX));
    canvas.addEventListener("mouseleave", () => this.pointAt(null));
    new ResizeObserver(() => this.requestDraw()).observe(canvas);
  }

  // Replaces the data: rows of [ts, value] or, bucketed, [ts, min, mean, max, count].
  setRows(rows, bucketed) {
    this.ts = rows.map((row) => row[0]);
    this.mean = rows.map((row) => (bucketed ? row[2] : row[1]));
    this.low = bucketed ? rows.map((row) => row[1]) : null;
    this.high = bucketed ? rows.map((row) => row[3]) : null;
    this.publish();
  }

  // Adds raw points, in any order; a point at a time already held replaces it.
  addPoints(points) {
    for (const [ts, value] of points) {
      const index = lowerBound(this.ts, ts);
      const replace = this.ts[index] === ts;
      this.ts.splice(index, replace ? 1 : 0, ts);
      this.mean.splice(index, replace ? 1 : 0, value);
      if (this.low) {
        this.low.splice(index, replace ? 1 : 0, value);
        this.high.splice(index, replace ? 1 : 0, value);
      }
    }
    this.publish();
  }

  setRange(from, to) {
    this.from = from;
    this.to = to;
    this.requestDraw();
  }

  // Drops points before `from`, so a live chart does not grow for ever.
  forgetBefore(from) {
    const cut = lowerBound(this.ts, from);
    if (cut === 0) return;
    for (const series of [this.ts, this.mean, this.low, this.high]) if (series) series.splice(0, cut);
    this.publish();
  }

  publish() {
    this.canvas.dataset.points = String(this.ts.length);
    this.canvas.dataset.last = this.ts.length ? String(this.mean[this.mean.length - 1]) : "";
    this.requestDraw();
  }

  requestDraw() {
    if (this.drawRequested) return;
    this.drawRequested = true;
    requestAnimationFrame(() => {
      this.drawRequested = false;
      this.draw();
    });
  }

  pointAt(x) {
    if (x === null || !this.ts.length) {
      this.hover = null;
    } else {
      const ts = this.from + ((x - PAD.left) / (this.width - PAD.left - PAD.right)) * (this.to - this.from);
      let index = Math.min(lowerBound(this.ts, ts), this.ts.length - 1);
      if (index > 0 && ts - this.ts[index - 1] < this.ts[index] - ts) index -= 1;
      this.hover = index;
    }
    this.requestDraw();
  }

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const width = (this.width = this.canvas.clientWidth);
    const height = this.canvas.clientHeight;
    if (!width || !height) return;
    if (this.canvas.width !== Math.round(width * ratio) || this.canvas.height !== Math.round(height * ratio)) {
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(height * ratio);
    }
    const context = this.canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const style = getComputedStyle(this.canvas);
    const colors = {
      line: style.getPropertyValue("--chart").trim(),
      band: style.getPropertyValue("--band").trim(),
      grid: style.getPropertyValue("--line").trim(),
      text: style.getPropertyValue("--muted").trim(),
    };
    const first = lowerBound(this.ts, this.from);
    const end = lowerBound(this.ts, this.to + 1);
    let min = Infinity;
    let max = -Infinity;
    for (let i = first; i < end; i++) {
      min = Math.min(min, this.low ? this.low[i] : this.mean[i]);
      max = Math.max(max, this.high ? this.high[i] : this.mean[i]);
    }
    if (min === Infinity) [min, max] = [0, 1];
    if (min === max) [min, max] = [min - 1, max + 1];
    const step = niceStep(max - min, Math.max(2, Math.floor(height / 40)));
    min = Math.floor(min / step) * step;
    max = Math.ceil(max / step) * step;
    const plotWidth = width - PAD.left - PAD.right;
    const plotHeight = height - PAD.top - PAD.bottom;
    const x = (ts) => PAD.left + ((ts - this.from) / (this.to - this.from)) * plotWidth;
    const y = (value) => PAD.top + (1 - (value - min) / (max - min)) * plotHeight;

    context.font = "11px system-ui, sans-serif";
    context.fillStyle = colors.text;
    context.strokeStyle = colors.grid;
    context.lineWidth = 1;
    context.textAlign = "right";
    context.textBaseline = "middle";
    for (let value = min; value <= max + step / 2; value += step) {
      const row = Math.round(y(value)) + 0.5;
      context.beginPath();
      context.moveTo(PAD.left, row);
      context.lineTo(width - PAD.right, row);
      context.stroke();
      context.fillText(Number(value.toPrecision(6)).toString(), PAD.left - 6, row);
    }
    const timeStep = TIME_STEPS.find((s) => (this.to - this.from) / s <= plotWidth / 80) || 86400000 * 7;
    context.textAlign = "center";
    context.textBaseline = "top";
    const offset = new Date().getTimezoneOffset() * 60000;
    for (let ts = Math.ceil((this.from - offset) / timeStep) * timeStep + offset; ts <= this.to; ts += timeStep) {
      context.fillText(timeLabel(ts, timeStep), x(ts), height - PAD.bottom + 6);
    }

    context.save();
    context.beginPath();
    context.rect(PAD.left, PAD.top, plotWidth, plotHeight);
    context.clip();
    const from = Math.max(0, first - 1);
    const to = Math.min(this.ts.length, end + 1);
    if (this.low) {
      context.fillStyle = colors.band;
      context.beginPath();
      for (let i = from; i < to; i++) context.lineTo(x(this.ts[i]), y(this.high[i]));
      for (let i = to - 1; i >= from; i--) context.lineTo(x(this.ts[i]), y(this.low[i]));
      context.fill();
    }
    context.strokeStyle = colors.line;
    context.lineWidth = 1.5;
    context.beginPath();
    let column = null;
    let columnMin = 0;
    let columnMax = 0;
    for (let i = from; i < to; i++) {
      const px = Math.round(x(this.ts[i]));
      const py = y(this.mean[i]);
      if (px === column) {
        columnMin = Math.min(columnMin, py);
        columnMax = Math.max(columnMax, py);
        continue;
      }
      if (column !== null && columnMax - columnMin > 1) {
        context.lineTo(column, columnMin);
        context.lineTo(column, columnMax);
      }
      context.lineTo(px, py);
      [column, columnMin, columnMax] = [px, py, py];
    }
    context.stroke();
    if (this.hover !== null && this.hover < this.ts.length) {
      const hx = x(this.ts[this.hover]);
      context.strokeStyle = colors.text;
      context.lineWidth = 1;
      context.beginPath();
      context.moveTo(hx, PAD.top);
      context.lineTo(hx, height - PAD.bottom);
      context.stroke();
      context.fillStyle = colors.line;
      context.beginPath();
      context.arc(hx, y(this.mean[this.hover]), 3, 0, 2 * Math.PI);
      context.fill();
    }
    context.restore();
    this.showReadout();
  }

  showReadout() {
    const index = this.hover ?? this.ts.length - 1;
    if (index < 0 || index >= this.ts.length) {
      this.readout.textContent = "";
      return;
    }
    const when = new Date(this.ts[index]).toLocaleString();
    const mean = Number(this.mean[index].toPrecision(6));
    this.readout.textContent = this.low
      ? `${when}: ${Number(this.low[index].toPrecision(6))} … ${mean} … ${Number(this.high[index].toPrecision(6))}`
      : `${when}: ${mean}`;
  }
}
