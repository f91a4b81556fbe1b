// drive.mjs: opens a page in Debian's chromium (playwright-core with
// executablePath) and runs steps read from stdin, one JSON object a line:
//   {"wait": "<JS expression>", "timeout_ms": 20000}  wait until it is true
//   {"screenshot": "<path>"}                           full-page PNG
//   {"eval": "<JS expression>"}                        print its JSON value
// It prints "ok <n>" after each step (or "fail <n> <reason>" and exits 1),
// so a Go test can act between steps. Used by internal/dashboard's
// TestDashboardFailover; see hack/dashboard/dashboard.mk.
//
// usage: node drive.mjs <url> [chromium path]
import { chromium } from "playwright-core";
import readline from "node:readline";

const [url, exe = process.env.CHROMIUM || "/usr/bin/chromium"] = process.argv.slice(2);
if (!url) {
  console.error("usage: node drive.mjs <url> [chromium path]");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: exe,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(url, { waitUntil: "load", timeout: 60000 });
  console.log("ok open");
  const rl = readline.createInterface({ input: process.stdin });
  let n = 0;
  for await (const line of rl) {
    if (!line.trim()) continue;
    n++;
    const step = JSON.parse(line);
    try {
      if (step.wait) {
        await page.waitForFunction(step.wait, null, { timeout: step.timeout_ms || 45000, polling: 200 });
        console.log(`ok ${n}`);
      } else if (step.screenshot) {
        await page.screenshot({ path: step.screenshot, fullPage: true });
        console.log(`ok ${n}`);
      } else if (step.eval) {
        console.log(`ok ${n} ${JSON.stringify(await page.evaluate(step.eval))}`);
      } else {
        throw new Error("unknown step " + line);
      }
    } catch (e) {
      console.log(`fail ${n} ${String(e.message).split("\n")[0]}`);
      code = 1;
      break;
    }
  }
} finally {
  await browser.close();
}
process.exit(code);
