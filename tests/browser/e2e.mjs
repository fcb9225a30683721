// End to end in headless Chromium, out of business hours: a shopper opens the chat widget from
// its button and asks for a person, and is told to leave a message; an agent signed in to the
// console claims the chat from the queue (which clears that notice), and gets it with its history
// (fallbacks labelled, an order lookup's call to the store's system), the product in view and a suggested answer, switches the console's language, replies while the shopper has the
// widget minimised, and closes the chat; the shopper sees the reply and rates the chat. Text with
// HTML in it stays text. On a phone-sized screen the widget is a button, and full screen when open.
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
  await agentPage.uncheck("#auto");
  await agentPage.click("#login");
  await agentPage.waitForSelector("#desk:not([hidden])", { timeout: WAIT });
  step("agent signed in");

  // The shopper asks the bot, then for a person.
  await shopperPage.goto(`${base}/chat-demo?store=shop`);
  await shopperPage.waitForSelector("#mibot-launcher", { timeout: WAIT });
  if (await shopperPage.isVisible("#mibot")) throw new Error("the chat window covers the page before it is opened");
  await shopperPage.click("#mibot-launcher");
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
  await say("qzxv wkpj");
  await shopperPage.waitForSelector(".mibot-msg[data-role=bot] >> nth=2", { timeout: WAIT });
  await say("订单 2026112312345678 到哪了");
  await shopperPage.waitForSelector(".mibot-msg[data-role=bot]:has-text('极兔速递')", { timeout: WAIT });
  await say("转人工");
  await shopperPage.waitForSelector(".mibot-notice[data-kind=queue]:has-text('非工作时间')", { timeout: WAIT });
  step("shopper handed to a person, and told it is out of hours");

  // The agent claims the chat from the queue: no "new chat" notice for a chat taken by hand.
  const waiting = agentPage.locator("#queue li").first();
  await waiting.waitFor({ timeout: WAIT });
  if (!(await waiting.textContent()).includes("转人工")) throw new Error(`the queue shows ${await waiting.textContent()}`);
  await waiting.locator("button.claim").click();
  await agentPage.waitForSelector("#chats li.chat-tab", { timeout: WAIT });
  await shopperPage.waitForSelector(".mibot-notice[data-kind=with_agent]", { timeout: WAIT });
  if ((await shopperPage.locator(".mibot-notice[data-kind=queue]").count()) !== 0) throw new Error("the out-of-hours notice stayed after the agent joined");
  const flashed = await agentPage.textContent("#flash");
  if (flashed.includes("New chat")) throw new Error(`a manual claim flashed ${JSON.stringify(flashed)}`);
  step("agent claimed the chat; the shopper's notice was cleared");

  // The agent has the chat, with its history.
  await agentPage.waitForSelector("#transcript .msg[data-role=shopper]:has-text('退货运费谁出')", { timeout: WAIT });
  await agentPage.waitForSelector("#transcript .msg[data-role=bot]", { timeout: WAIT });
  const reason = (await agentPage.textContent("#chat-reason")).trim();
  if (reason !== "Asked for a person") throw new Error(`the reason reads ${JSON.stringify(reason)}`);
  // The order lookup's call to the store's system, folded under its reply.
  const call = agentPage.locator("#transcript .msg[data-role=bot] details.task");
  if ((await call.count()) !== 1) throw new Error("the order lookup's call is not in the transcript");
  const summary = (await call.locator("summary").textContent()).trim();
  if (!/^order_status · HTTP 200 · \d+ ms$/.test(summary)) throw new Error(`the call reads ${JSON.stringify(summary)}`);
  await call.locator("summary").click();
  if (!(await call.locator("pre").first().textContent()).includes("2026112312345678")) throw new Error("the call's request is not shown");
  const fallback = agentPage.locator("#transcript .msg[data-kind=fallback]");
  if ((await fallback.count()) !== 1) throw new Error("the fallback reply is not marked as one");
  if (!(await fallback.locator(".who").textContent()).includes("Fallback reply")) throw new Error("the fallback reply is not labelled");
  const product = (await agentPage.textContent("#chat-product")).trim();
  if (!product.includes("Nova X1 Phone") || !product.includes("NV-X1")) throw new Error(`the product in view reads ${JSON.stringify(product)}`);
  const times = await agentPage.locator("#transcript .msg time.at").allTextContents();
  if (!times.length || !times.every((t) => /^(\d{4}-\d\d-\d\d )?\d\d:\d\d$/.test(t))) throw new Error(`message times ${JSON.stringify(times)}`);
  agentPage.once("dialog", (dialog) => dialog.accept("运费规则已更新"));
  await agentPage.locator("#transcript .msg[data-role=bot] button.flag").first().click();
  await agentPage.waitForSelector("#transcript .msg[data-role=bot] button.flag:disabled", { timeout: WAIT });
  step("agent sees the history and the product in view, and flags a bot answer");

  // The console in Chinese, and back: the choice is kept.
  await agentPage.click("#lang");
  const zhReason = (await agentPage.textContent("#chat-reason")).trim();
  const zhQueue = (await agentPage.textContent("h2 [data-text=queue]")).trim();
  const zhSend = (await agentPage.textContent("#send")).trim();
  if (zhReason !== "要求转人工" || zhQueue !== "排队中" || zhSend !== "发送") throw new Error(`in Chinese: ${JSON.stringify([zhReason, zhQueue, zhSend])}`);
  if (!(await agentPage.textContent("#chat-product")).includes("星河 X1 手机")) throw new Error("the product is not named in Chinese");
  if (process.env.SCREENSHOTS) await agentPage.screenshot({ path: `${process.env.SCREENSHOTS}/console-zh.png` });
  await agentPage.reload();
  await agentPage.waitForSelector("#desk:not([hidden])", { timeout: WAIT });
  if ((await agentPage.textContent("#send")).trim() !== "发送") throw new Error("the language choice was not kept");
  await agentPage.click("#lang");
  if ((await agentPage.textContent("#send")).trim() !== "Send") throw new Error("the console did not switch back to English");
  await agentPage.waitForSelector("#chats li.chat-tab", { timeout: WAIT });
  step("agent switched the console to Chinese and back");

  // The shopper writes on; the agent gets a suggested answer and sends it.
  await say("发票怎么申请");
  await agentPage.waitForSelector("#transcript .msg[data-role=shopper]:has-text('发票怎么申请')", { timeout: WAIT });
  const suggestion = agentPage.locator("#suggestions li").first();
  await suggestion.waitFor({ timeout: WAIT });
  const answer = (await suggestion.locator(".a").textContent()).trim();
  await suggestion.click();
  if ((await agentPage.inputValue("#reply")).trim() !== answer) throw new Error("the suggestion did not fill the reply box");
  // The shopper minimises the widget; the agent's answer lights its button.
  await shopperPage.click("#mibot-minimise");
  if (await shopperPage.isVisible("#mibot")) throw new Error("the widget did not minimise");
  await agentPage.click("#send");
  await shopperPage.waitForSelector("#mibot-launcher .mibot-unread:has-text('1')", { timeout: WAIT });
  await shopperPage.click("#mibot-launcher");
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

  // On a phone: the button only, then the chat full screen, then closed again.
  const phone = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })).newPage();
  phone.on("pageerror", (e) => problems.push(String(e)));
  await phone.goto(`${base}/chat-demo?store=shop`);
  const button = await (await phone.waitForSelector("#mibot-launcher", { timeout: WAIT })).boundingBox();
  if (button.width * button.height > 0.05 * 390 * 844) throw new Error(`the closed widget covers ${JSON.stringify(button)}`);
  if (process.env.SCREENSHOTS) await phone.screenshot({ path: `${process.env.SCREENSHOTS}/widget-phone-closed.png` });
  await phone.click("#mibot-launcher");
  await phone.waitForSelector("#mibot-input", { timeout: WAIT });
  const open = await phone.locator("#mibot").boundingBox();
  if (open.x !== 0 || open.y !== 0 || open.width !== 390 || open.height !== 844) throw new Error(`the open widget on a phone is ${JSON.stringify(open)}`);
  await phone.waitForSelector(".mibot-msg[data-role=bot]", { timeout: WAIT });
  if (process.env.SCREENSHOTS) await phone.screenshot({ path: `${process.env.SCREENSHOTS}/widget-phone-open.png` });
  await phone.click("#mibot-close");
  if (await phone.isVisible("#mibot")) throw new Error("the widget did not close");
  await phone.waitForSelector("#mibot-launcher", { timeout: WAIT });
  step("on a phone the widget is a button, full screen when open, and closes");

  if (problems.length) throw new Error(`page errors: ${problems.join("; ")}`);
  console.log(JSON.stringify({ ok: true, steps }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, steps, error: String(error && error.message ? error.message : error) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
