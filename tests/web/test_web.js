// Drives Debian's chromium (never a downloaded one) through the collector's web
// page with puppeteer-core; run by tests/integration/test_web.py, which starts
// the collector, the agent and the leaking service first. Exits 0 when every
// check passed, 1 with the failed check on stderr.
//   node test_web.js --url URL --token T --pid P --alert ID --hostile NAME
//                    --chromium /usr/bin/chromium --screenshot OUT.png --profile DIR
"use strict";

const fs = require("fs");
const path = require("path");
const puppeteer = require("puppeteer-core");

function args() {
  const a = {};
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) {
    if (!v[i].startsWith("--") || v[i + 1] === undefined) throw new Error(`bad argument ${v[i]}`);
    a[v[i].slice(2)] = v[i + 1];
  }
  for (const k of ["url", "token", "pid", "alert", "hostile", "chromium", "screenshot", "profile"])
    if (!a[k]) throw new Error(`missing --${k}`);
  return a;
}

function check(ok, what) {
  if (!ok) throw new Error("check failed: " + what);
  console.log("ok: " + what);
}

// Clicks the element now, in the page: the tables are rebuilt on every poll, so a
// handle taken before the click (page.click) may be detached by the time it lands.
async function clickNow(page, sel) {
  await page.waitForFunction((q) => {
    const e = document.querySelector(q);
    if (e) e.click();
    return !!e;
  }, { timeout: 15000 }, sel);
}

async function main() {
  const a = args();
  fs.mkdirSync(a.profile, { recursive: true });
  const browser = await puppeteer.launch({
    executablePath: a.chromium,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      `--user-data-dir=${a.profile}`],
  });
  const problems = [];
  try {
    const page = await browser.newPage();
    // A CSP violation, a script error or a failed fetch shows here: none is allowed.
    // (The 401s of the token prompt are expected: Chromium logs each refused fetch.)
    page.on("console", (m) => {
      if (m.type() === "error" && !/status of 401/.test(m.text())) problems.push("console: " + m.text());
    });
    page.on("pageerror", (e) => problems.push("page error: " + e.message));
    await page.setViewport({ width: 1280, height: 900 });
    const resp = await page.goto(a.url + "/", { waitUntil: "load", timeout: 20000 });
    const h = resp.headers();
    check(/script-src 'self'/.test(h["content-security-policy"] || ""), "the page has a CSP without inline script");
    check(h["x-content-type-options"] === "nosniff", "the page is sent with nosniff");
    await page.waitForSelector("body[data-ready='1']", { timeout: 20000 });

    // The leaking service among the processes, and on the landing page's chart without a click.
    const mark = `:${a.pid}:`;
    await page.waitForFunction((m) => [...document.querySelectorAll("tr[data-process]")]
      .some((r) => r.dataset.process.includes(m)), { timeout: 20000 }, mark);
    check(true, "the leaking service is listed among the processes");
    await page.waitForFunction((m) => {
      const c = document.getElementById("chart");
      return c.dataset.process && c.dataset.process.includes(m) && Number(c.dataset.points) >= 10 &&
        Number(c.dataset.cone) > 0 && c.querySelector("canvas");
    }, { timeout: 20000 }, mark);
    const chart = await page.$eval("#chart", (c) => ({ points: Number(c.dataset.points), cone: Number(c.dataset.cone) }));
    check(chart.points >= 10 && chart.cone > 0,
      `the landing chart is the leaking service's, with ${chart.points} points and a cone of ${chart.cone}`);
    const verdict = await page.$eval("#verdict", (e) => e.textContent);
    check(/leak|growing/.test(verdict), `the verdict is shown with its reason: "${verdict.slice(0, 120)}"`);

    // The alert is listed; Ack asks for the token (a wrong one first), then acks.
    const row = `tr[data-alert='${a.alert}']`;
    await page.waitForSelector(row, { timeout: 20000 });
    check(true, `alert ${a.alert} is listed`);
    await page.screenshot({ path: a.screenshot, fullPage: false });
    await page.screenshot({ path: a.screenshot.replace(/\.png$/, "-full.png"), fullPage: true });
    await clickNow(page, `${row} button.ack`);
    await page.waitForSelector("#token-dialog[open]", { timeout: 10000 });
    check(true, "Ack asks for the API token");
    await page.type("#token-input", "not-the-token-0000000000000000");
    await page.click("#token-ok");
    await page.waitForFunction(() => {
      const d = document.getElementById("token-dialog");
      return d.open && !document.getElementById("token-error").hidden;
    }, { timeout: 10000 });
    check(true, "a wrong token is refused and asked again");
    await page.type("#token-input", a.token);
    await page.click("#token-ok");
    await page.waitForSelector(`${row}.acked`, { timeout: 15000 });
    check(true, "the alert shows acked after the token was given");
    const kept = await page.evaluate(() => sessionStorage.getItem("apm-api-token"));
    check(kept === a.token, "the token is kept in sessionStorage for the session");
    // A second write uses the kept token: no prompt.
    await clickNow(page, `${row} button`);
    await page.waitForFunction((r) => !document.querySelector(r).classList.contains("acked"), { timeout: 15000 }, row);
    check(!(await page.$("#token-dialog[open]")), "Unack used the kept token without asking");

    // Silence…: a matcher silence prefilled with the alert's rule, host and process.
    await clickNow(page, `${row} button.silence`);
    await page.waitForSelector("#act-dialog[open]", { timeout: 10000 });
    const pre = await page.$eval("#act-matchers", (t) => t.value);
    check(/^alertname="[^"]+"\nhost="[^"]+"/.test(pre), `the silence is prefilled: ${JSON.stringify(pre)}`);
    await page.type("#act-comment", "known leak");
    await page.click("#act-ok");
    await page.waitForFunction((r) => /silenced by #\d+/.test(document.querySelector(r).textContent),
      { timeout: 15000 }, row);
    check(true, "the alert shows silenced by the new silence");
    const srow = await page.waitForSelector("tr[data-silence]", { timeout: 15000 });
    const stext = await srow.evaluate((r) => r.textContent);
    check(/active/.test(stext) && stext.includes("known leak"), `the silence is listed: ${stext.slice(0, 160)}`);
    await clickNow(page, "tr[data-silence] button.expire");
    await page.waitForFunction(() => /expired/.test(document.querySelector("tr[data-silence]").textContent),
      { timeout: 15000 });
    await page.waitForFunction((r) => !/silenced by/.test(document.querySelector(r).textContent),
      { timeout: 15000 }, row);
    check(true, "Expire ends the silence and the alert is no longer silenced");

    await clickNow(page, `${row} button.ack`);
    await page.waitForSelector(`${row}.acked`, { timeout: 15000 });

    // A process whose script name is markup: shown as text, never run.
    const hostileId = await page.evaluate(async (name) => {
      const r = await (await fetch("/api/v1/processes")).json();
      const p = r.processes.find((x) => x.name.includes(name));
      return p ? p.id : null;
    }, a.hostile);
    check(hostileId !== null, "the process named with markup is known to the API");
    await page.evaluate((id) => { location.hash = "p=" + encodeURIComponent(id); }, hostileId);
    await page.waitForFunction((n) => document.getElementById("focus-title").textContent.includes(n),
      { timeout: 15000 }, a.hostile);
    const injected = await page.evaluate(() => ({ img: document.querySelectorAll("img").length, title: document.title }));
    check(injected.img === 0 && injected.title !== "pwned", "markup in a process name stays text");
    check(page.url().includes("#p="), "the selected process is in the URL");

    // A phone's width: the page fits without sideways scrolling.
    await page.evaluate((id) => { location.hash = "p=" + encodeURIComponent(id); }, (await page.$eval("#chart", (c) => c.dataset.process)));
    await page.setViewport({ width: 390, height: 844, isMobile: true });
    await page.goto(page.url(), { waitUntil: "load" });
    await page.waitForSelector("body[data-ready='1'] #chart canvas", { timeout: 20000 });
    const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
    check(fits, "at 390 px the page needs no sideways scrolling");
    const phone = path.join(path.dirname(a.screenshot), path.basename(a.screenshot, ".png") + "-phone.png");
    await page.screenshot({ path: phone, fullPage: false });
    console.log("screenshots: " + a.screenshot + " " + phone);
    check(problems.length === 0, "no script error or CSP violation: " + problems.join(" | "));
  } finally {
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e.message);
  process.exit(1);
});
