// End to end in headless Chromium: a shopper in the chat widget asks for a person; an agent
// signed in to the console gets the chat with its history and a suggested answer, replies,
// and closes it; the shopper sees the reply and rates the chat. Text with HTML in it stays text.
//
// Usage: node e2e.mjs BASE_URL AGENT_TOKEN   (Chromium from $CHROMIUM or /usr/bin/chromium)
// Prints one JSON line; exits non-zero on the first failed step.
import { chromium } from "playwright-core";

const [base, token] = process.argv.slice(2);
if (!base || !token) {
  console.error("usage: node e2e.mjs BASE_URL AGENT_TOKEN");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT = 15000;
const steps = [];
const step = (name) => steps.push(name);

const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
try {
  const agentPage = await (await browser.newContext()).newPage();
  const shopperPage = await (await browser.newContext()).newPage();
  const problems = [];
  for (const page of [agentPage, shopperPage]) {
    page.on("pageerror", (e) => problems.push(String(e)));
  }

  // The agent signs in.
  await agentPage.goto(`${base}/console`);
  if (await agentPage.isVisible("#desk")) throw new Error("the desk shows before sign-in");
  await agentPage.fill("#token", token);
  await agentPage.click("#login");
  await agentPage.waitForSelector("#desk:not([hidden])", { timeout: WAIT });
  step("agent signed in");

  // The shopper asks the bot, then for a person.
  await shopperPage.goto(`${base}/chat-demo?store=shop`);
  await shopperPage.waitForSelector("#mibot-input", { timeout: WAIT });
  const say = async (text) => {
    await shopperPage.fill("#mibot-input", text);
    await shopperPage.click("#mibot-send");
  };
  await say("退货运费谁出");
  await shopperPage.waitForSelector(".mibot-msg[data-role=bot]:has-text('退货运费')", { timeout: WAIT });
  if ((await shopperPage.locator(".mibot-vote button svg").count()) !== 2) throw new Error("the vote buttons are not drawn as SVG");
  await shopperPage.click(".mibot-vote button[data-helpful='false']");
  await shopperPage.waitForSelector(".mibot-vote[data-state=noted]", { timeout: WAIT });
  step("bot answered in the widget; the shopper voted on it");
  await say("转人工");
  await shopperPage.waitForSelector(".mibot-notice[data-kind=with_agent]", { timeout: WAIT });
  step("shopper handed to a person");

  // The agent has the chat, with its history.
  await agentPage.waitForSelector("#chats li.chat-tab", { timeout: WAIT });
  await agentPage.waitForSelector("#transcript .msg[data-role=shopper]:has-text('退货运费谁出')", { timeout: WAIT });
  await agentPage.waitForSelector("#transcript .msg[data-role=bot]", { timeout: WAIT });
  const reason = (await agentPage.textContent("#chat-reason")).trim();
  if (reason !== "Asked for a person") throw new Error(`the reason reads ${JSON.stringify(reason)}`);
  const times = await agentPage.locator("#transcript .msg time.at").allTextContents();
  if (!times.length || !times.every((t) => /^(\d{4}-\d\d-\d\d )?\d\d:\d\d$/.test(t))) throw new Error(`message times ${JSON.stringify(times)}`);
  agentPage.once("dialog", (dialog) => dialog.accept("运费规则已更新"));
  await agentPage.locator("#transcript .msg[data-role=bot] button.flag").first().click();
  await agentPage.waitForSelector("#transcript .msg[data-role=bot] button.flag:disabled", { timeout: WAIT });
  step("agent sees the history and flags a bot answer");

  // The shopper writes on; the agent gets a suggested answer and sends it.
  await say("发票怎么申请");
  await agentPage.waitForSelector("#transcript .msg[data-role=shopper]:has-text('发票怎么申请')", { timeout: WAIT });
  const suggestion = agentPage.locator("#suggestions li").first();
  await suggestion.waitFor({ timeout: WAIT });
  const answer = (await suggestion.locator(".a").textContent()).trim();
  await suggestion.click();
  if ((await agentPage.inputValue("#reply")).trim() !== answer) throw new Error("the suggestion did not fill the reply box");
  await agentPage.click("#send");
  await shopperPage.waitForSelector(`.mibot-msg[data-role=agent]`, { timeout: WAIT });
  const shown = await shopperPage.locator(".mibot-msg[data-role=agent]").last().textContent();
  if (!shown.includes(answer)) throw new Error(`the shopper saw ${JSON.stringify(shown)}, not the answer`);
  step("agent replied with a suggestion; shopper saw it");
  if (process.env.SCREENSHOTS) {
    await agentPage.setViewportSize({ width: 1280, height: 720 });
    await agentPage.screenshot({ path: `${process.env.SCREENSHOTS}/console.png` });
    await shopperPage.screenshot({ path: `${process.env.SCREENSHOTS}/widget.png` });
  }

  // Markup is shown as text on both sides.
  const markup = `<img src=x onerror="window.__pwned=1">看这里<b>粗体</b>`;
  await say(markup);
  await agentPage.waitForSelector("#transcript .msg[data-role=shopper]:has-text('看这里')", { timeout: WAIT });
  const agentSees = await agentPage.locator("#transcript .msg[data-role=shopper]").last().textContent();
  if (!agentSees.includes(markup)) throw new Error(`the console rendered ${JSON.stringify(agentSees)}`);
  await agentPage.fill("#reply", "<script>window.__pwned=1</script>好的");
  await agentPage.click("#send");
  await shopperPage.waitForSelector(".mibot-msg[data-role=agent]:has-text('好的')", { timeout: WAIT });
  const pwned = (await agentPage.evaluate(() => window.__pwned)) || (await shopperPage.evaluate(() => window.__pwned));
  if (pwned) throw new Error("markup ran as HTML");
  if ((await agentPage.locator("#transcript img, #transcript b").count()) > 0) throw new Error("the console made elements from text");
  if ((await shopperPage.locator("#mibot script, #mibot img").count()) > 0) throw new Error("the widget made elements from text");
  step("markup stayed text");

  // The agent closes; the shopper rates.
  await agentPage.click("#close");
  await agentPage.waitForSelector("#chats li.chat-tab", { state: "detached", timeout: WAIT });
  await shopperPage.click(".mibot-rate button[data-score='5']", { timeout: WAIT });
  await shopperPage.waitForSelector(".mibot-notice[data-kind=rated]", { timeout: WAIT });
  step("agent closed; shopper rated 5");

  if (problems.length) throw new Error(`page errors: ${problems.join("; ")}`);
  console.log(JSON.stringify({ ok: true, steps }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, steps, error: String(error && error.message ? error.message : error) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
