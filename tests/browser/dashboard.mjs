// The merchant dashboard in headless Chromium: sign in with the store's key, see the measures and
// charts and a spike alert, message the shoppers of that alert, accept a drafted answer for the
// unanswered questions, export the conversations as CSV, and save a screenshot. The history is a
// few minutes old, so the charts have one day of data: they must still read as charts.
//
// The agent console shows the same alert to an agent who signs in.
//
// Usage: node dashboard.mjs BASE_URL STORE KEY EXPECTED_SESSIONS SCREENSHOT.png AGENT_TOKEN
import { readFile } from "node:fs/promises";
import { chromium } from "playwright-core";

const [base, store, key, sessions, shot, agentToken] = process.argv.slice(2);
const WAIT = 15000;
const steps = [];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  await page.goto(`${base}/dashboard`);
  await page.fill("#key", "mk_wrong");
  await page.fill("#store", store);
  await page.click("#login");
  await page.waitForSelector("#login-error:has-text('wrong')", { timeout: WAIT });
  steps.push("a wrong key is refused");
  await page.fill("#key", key);
  await page.click("#login");
  await page.waitForSelector("body[data-loaded=true]", { timeout: WAIT });
  const shown = (await page.locator("[data-tile=sessions] .v").textContent()).trim();
  if (shown !== sessions) throw new Error(`the sessions tile says ${shown}, not ${sessions}`);
  const bars = await page.locator("#volume rect.bar-sessions").evaluateAll((rects) => rects.filter((r) => Number(r.getAttribute("height")) > 0).length);
  if (bars < 1) throw new Error("the volume chart has no bars");
  if ((await page.locator("#reasons rect.bar-reason").count()) < 1) throw new Error("the handoff chart has no bars");
  if ((await page.locator("#rates circle.line-resolution-point").count()) < 1) throw new Error("the resolution rate is not drawn");
  // One day of data still reads: a scale on the side, dates below, and the day's value written.
  const rateLabels = await page.locator("#rates text").allTextContents();
  for (const label of ["0%", "50%", "100%"]) if (!rateLabels.includes(label)) throw new Error(`the rate chart's scale lacks ${label}: ${JSON.stringify(rateLabels)}`);
  if (!rateLabels.some((t) => /^\d+\/\d+$/.test(t))) throw new Error(`the rate chart has no dates: ${JSON.stringify(rateLabels)}`);
  if ((await page.locator("#rates text.value").count()) < 1) throw new Error("the rate chart does not say its value");
  const widths = await page.locator("#volume rect.bar-sessions").evaluateAll((rects) => rects.map((r) => Number(r.getAttribute("width"))));
  if (Math.max(...widths) > 48) throw new Error(`a volume bar is ${Math.max(...widths)} wide`);
  steps.push("measures and charts shown");
  // The conversations as a spreadsheet.
  const [download] = await Promise.all([page.waitForEvent("download", { timeout: WAIT }), page.click("#export")]);
  if (download.suggestedFilename() !== `${store}-conversations.csv`) throw new Error(`the export is named ${download.suggestedFilename()}`);
  const csv = (await readFile(await download.path(), "utf8")).replace(/^\uFEFF/, "").split(/\r?\n/).filter(Boolean);
  if (!csv[0].startsWith("conversation") || csv.length - 1 !== Number(sessions)) throw new Error(`the export has ${csv.length - 1} rows: ${csv[0]}`);
  steps.push("conversations exported as CSV");
  const alert = page.locator("#alerts tbody tr[data-alert]").first();
  await alert.waitFor({ timeout: WAIT });
  if (!(await alert.textContent()).includes("花呗")) throw new Error(`the alert is about: ${await alert.textContent()}`);
  await alert.locator("input").fill("花呗分期的问题我们正在处理，稍后回复您。");
  await alert.locator("button.notify").click();
  await page.waitForSelector("#flash:has-text('Sent to 1 open')", { timeout: WAIT });
  steps.push("a spike alert shown, and its shoppers sent a message");
  const row = page.locator("#clusters tbody tr[data-cluster]").first();
  await row.waitFor({ timeout: WAIT });
  await page.screenshot({ path: shot, fullPage: true });
  await row.locator("textarea.draft-answer").fill("支持花呗分期，最多12期免息。");
  await row.locator("button.accept").click();
  await page.waitForSelector("#flash:has-text('version')", { timeout: WAIT });
  steps.push("a draft accepted into the pack");
  const consolePage = await browser.newPage();
  consolePage.on("pageerror", (e) => problems.push(String(e)));
  await consolePage.goto(`${base}/console`);
  await consolePage.fill("#token", agentToken);
  await consolePage.click("#login");
  const banner = consolePage.locator("#alerts li[data-alert]").first();
  await banner.waitFor({ timeout: WAIT });
  if (!(await banner.textContent()).includes("花呗")) throw new Error(`the console's alert says: ${await banner.textContent()}`);
  steps.push("the console shows the alert");
  if (problems.length) throw new Error(`page errors: ${problems.join("; ")}`);
  console.log(JSON.stringify({ ok: true, steps }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, steps, error: String(error && error.message ? error.message : error) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
