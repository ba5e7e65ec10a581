"""The fleet page in headless Chromium while the fleet reports: how smoothly it renders.

Measures the intervals between animation frames in the page (60 per second is smooth) and the
main thread's long tasks, while every device publishes."""
import shutil

from playwright.sync_api import sync_playwright

FRAME_PROBE = """
(seconds) => new Promise((resolve) => {
  const intervals = [];
  let longTasks = 0;
  new PerformanceObserver((list) => { longTasks += list.getEntries().length; }).observe({ entryTypes: ["longtask"] });
  let last = performance.now();
  const end = last + seconds * 1000;
  function frame(now) {
    intervals.push(now - last);
    last = now;
    if (now < end) requestAnimationFrame(frame);
    else resolve({ intervals, longTasks, rows: document.querySelectorAll("tr[data-device]").length });
  }
  requestAnimationFrame(frame);
})
"""


def measure_fleet_page(url, cookie, devices, seconds, while_measuring):
    """Opens the fleet page signed in with `cookie`, waits for every device's row, then calls
    `while_measuring()` (which starts the load) and measures `seconds` of rendering."""
    name, value = cookie.split("=", 1)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": name, "value": value, "url": url}])
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_function(f"document.querySelectorAll('tr[data-device]').length >= {devices}", timeout=60_000)
        load = while_measuring()
        result = page.evaluate(FRAME_PROBE, seconds)
        shown = page.locator("#counts").inner_text()
        browser.close()
    intervals = sorted(result["intervals"][1:])
    pick = lambda fraction: round(intervals[min(len(intervals) - 1, int(len(intervals) * fraction))], 1)
    return {
        "rows": result["rows"], "counts": shown, "frames_per_s": round(len(intervals) / seconds, 1),
        "frame_interval_p50_ms": pick(0.5), "frame_interval_p99_ms": pick(0.99), "frame_interval_max_ms": pick(1.0),
        "long_tasks": result["longTasks"], "load": load,
    }
