// Opens pages of `chimewatch up`'s console in headless Chromium (Debian's, driven by playwright-core) and prints,
// as JSON, what a person would see on each: every widget's title, kind, datapoint count, error and text, and the
// alarm rows. A full-page screenshot of each page goes into the output directory.
//
// node console.js BASE_URL OUT_DIR PATH...
const { chromium } = require("playwright-core");
const path = require("path");

async function main() {
  const [base, outDir, ...pages] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
    ],
  });
  const seen = {};
  try {
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    for (const [i, p] of pages.entries()) {
      const response = await page.goto(base + p, { waitUntil: "load" });
      const shown = await page.evaluate(() => ({
        title: document.title,
        widgets: [...document.querySelectorAll(".w")].map((w) => {
          const box = w.getBoundingClientRect();
          return {
            title: w.dataset.title,
            kind: w.dataset.kind,
            points: Number(w.dataset.points),
            sum: Number(w.dataset.sum),
            error: w.querySelector(".error") ? w.querySelector(".error").textContent : null,
            svg: w.querySelector("svg") !== null,
            visible: box.width > 0 && box.height > 0,
            text: w.innerText.slice(0, 4000),
          };
        }),
        alarms: [...document.querySelectorAll("tr[data-alarm]")].map((r) => ({
          name: r.dataset.alarm, state: r.dataset.state, text: r.innerText,
        })),
        history: document.querySelectorAll("tr[data-history]").length,
        firing: document.querySelector("[data-firing]") ? Number(document.querySelector("[data-firing]").dataset.firing) : 0,
        events: document.querySelector("[data-events]") ? Number(document.querySelector("[data-events]").dataset.events) : null,
        body: document.body.innerText.slice(0, 20000),
      }));
      shown.status = response.status();
      const file = path.join(outDir, `console-${i}-${p.split("?")[0].replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "") || "home"}.png`);
      await page.screenshot({ path: file, fullPage: true });
      shown.screenshot = file;
      seen[p] = shown;
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(seen));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
