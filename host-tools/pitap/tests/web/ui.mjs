// Drives Debian's Chromium (headless, through the DevTools protocol with
// playwright-core) against a running `pitap serve`. Run by tests/web_ui.rs:
//   node ui.mjs '{"base": "http://127.0.0.1:PORT", "expect": {...}, "shots": "DIR or empty"}'
// Prints one JSON object of what it saw; exits 1 on the first failed check.
import { chromium } from "playwright-core";

const args = JSON.parse(process.argv[2]);
const { base, expect, shots } = args;
const problems = [];
const seen = {};

function check(ok, what) {
  if (!ok) {
    problems.push(what);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("dialog", async (d) => { errors.push("dialog opened: " + d.message()); await d.dismiss(); });

  async function visit(path, name) {
    const before = errors.length;
    const resp = await page.goto(base + path, { waitUntil: "load" });
    check(resp && resp.status() === 200, `${name}: HTTP ${resp && resp.status()}`);
    const pwned = await page.evaluate(() => window.__pwned === undefined ? null : window.__pwned);
    check(pwned === null, `${name}: a payload ran`);
    check(errors.length === before, `${name}: console errors ${JSON.stringify(errors.slice(before))}`);
    if (shots) {
      await page.screenshot({ path: `${shots}/${name}.png`, fullPage: false });
    }
  }

  // Overview: the byte total is the store's.
  await visit("/?range=all", "overview");
  seen.total_bytes = await page.getAttribute("#total-bytes", "data-bytes");
  check(seen.total_bytes === String(expect.total_bytes),
    `overview bytes ${seen.total_bytes} != ${expect.total_bytes}`);

  // The map: a country with flows links to them.
  const codes = Object.keys(expect.countries);
  seen.map_countries = await page.$$eval("#map-dst_country svg a path[data-country]",
    (ps) => ps.map((p) => p.dataset.country).sort());
  check(JSON.stringify(seen.map_countries) === JSON.stringify(codes.sort()),
    `map countries ${seen.map_countries} != ${codes}`);
  check(await page.locator("#no-geoip").count() === 0, "the map asks for a database it has");
  if (shots) {
    await page.locator("#map-dst_country").screenshot({ path: `${shots}/map.png` });
  }
  const code = codes[0];
  await Promise.all([page.waitForNavigation(),
    page.locator(`#map-dst_country svg a:has(path[data-country="${code}"])`).click()]);
  seen.query_after_map = await page.inputValue("#q");
  check(seen.query_after_map === `dst_country:${code}`, `after the map click the query is ${seen.query_after_map}`);
  const onMap = Number((await page.textContent("#matched")).replace(/,/g, ""));
  check(onMap === Number(expect.countries[code]), `map click matched ${onMap}, the store says ${expect.countries[code]}`);

  // Search: a quick value's bar narrows the query to field:value.
  await visit("/search?range=all&qv=dst_addr", "search");
  const bar = page.locator("#quick svg a").first();
  const label = (await bar.locator("text.label").textContent()).trim();
  await Promise.all([page.waitForNavigation(), bar.click()]);
  seen.query_after_click = await page.inputValue("#q");
  check(seen.query_after_click === `dst_addr:${label}`,
    `after the click the query is ${seen.query_after_click}, not dst_addr:${label}`);
  const dests = await page.$$eval("#flows tbody tr td:nth-child(6)", (tds) => tds.map((t) => t.textContent));
  seen.rows_after_click = dests.length;
  check(dests.length > 0, "no rows after the click");
  check(dests.every((d) => d === label || d.startsWith(label + ":")),
    `rows of other destinations after the click: ${JSON.stringify(dests.slice(0, 5))}`);
  const matched = Number((await page.textContent("#matched")).replace(/,/g, ""));
  seen.matched_after_click = matched;
  check(matched === Number(expect.counts[label]), `matched ${matched}, the store says ${expect.counts[label]} for ${label}`);

  // A query error shows its column.
  await page.goto(base + "/search?range=all&q=" + encodeURIComponent("bytes:>big"));
  const err = await page.textContent("#query-error");
  check(/column 8/.test(err) && err.includes("^"), `query error shown as ${err}`);

  // The hostile names render as text, nothing runs.
  await visit("/search?range=all&q=" + encodeURIComponent("dst_port:443"), "search-hostile");
  const names = await page.$$eval("#flows td.names", (tds) => tds.map((t) => t.textContent));
  check(names.some((n) => n.includes(expect.hostile_sni)), `the hostile SNI is not shown as text: ${JSON.stringify(names)}`);
  check(await page.locator("#flows img").count() === 0, "an <img> from a payload is in the table");
  check(await page.locator("main script").count() === 0, "a <script> from a payload is in the page");
  const flowLink = page.locator("#flows tbody tr td:first-child a").first();
  await Promise.all([page.waitForNavigation(), flowLink.click()]);
  if (shots) {
    await page.screenshot({ path: `${shots}/flow.png` });
  }
  seen.flow_sni = await page.textContent('td[data-field="sni"]');
  check(seen.flow_sni === expect.hostile_sni, `the flow page shows SNI ${seen.flow_sni}`);
  seen.flow_http_host = await page.textContent('td[data-field="http_host"]');

  // Reports, devices, the DHCP client's device page.
  await visit("/reports?range=all", "reports");
  await visit("/devices", "devices");
  await visit("/device?mac=" + encodeURIComponent(expect.dhcp_mac), "device");
  seen.device_mac = (await page.textContent("#mac")).trim();
  seen.device_hostname = (await page.textContent("#hostname")).trim();
  check(seen.device_mac === expect.dhcp_mac, `device page MAC ${seen.device_mac}`);
  check(seen.device_hostname === expect.dhcp_hostname, `device page hostname ${seen.device_hostname}`);
  seen.device_hostnames = (await page.textContent("#hostnames")).trim();
  check(seen.device_hostnames.startsWith(expect.dhcp_hostname + " ("), `device page hostnames ${seen.device_hostnames}`);

  // Live: the overview refreshes itself when the store changes.
  if (expect.live) {
    await page.goto(base + "/?range=all");
    await page.waitForFunction(() => document.getElementById("live").textContent === "live", null, { timeout: 10000 });
    seen.live = true;
  }
} catch (e) {
  problems.push("script: " + (e && e.stack || e));
} finally {
  await browser.close();
}
console.log(JSON.stringify({ problems, seen }));
process.exit(problems.length ? 1 : 0);
