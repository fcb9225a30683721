// mibot's chat widget. Embed it on any page with one tag:
//   <script src="https://YOUR-MIBOT/widget.js" data-store="STORE" data-product="SKU" data-shopper="MEMBER-ID" data-shopper-signature="HMAC" defer></script>
// (data-product, data-shopper and data-shopper-signature are optional: the product page's SKU, the
// storefront's member id, and that id's hex HMAC-SHA256 under the store's identity secret, made on
// the storefront's server. An id without a valid signature is not used: the shopper is anonymous.)
// It puts a chat button in the corner; the button opens the chat window (full screen on a phone),
// which can be minimised back to the button or closed. It talks to mibot over a WebSocket, and
// keeps the conversation across page loads (the resume token is kept in localStorage): with a
// conversation going on, it connects at once, so that an agent's message lights the button.
// Everything shoppers, the bot and agents write is shown as text, never as HTML.
(function () {
  "use strict";
  var script = document.currentScript;
  var store = (script && script.dataset.store) || "demo";
  var product = script && script.dataset.product;
  var shopperId = script && script.dataset.shopper;
  var shopperSignature = script && script.dataset.shopperSignature;
  var origin = new URL(script ? script.src : location.href, location.href);
  var wsUrl = (origin.protocol === "https:" ? "wss://" : "ws://") + origin.host + "/ws/chat?store=" + encodeURIComponent(store);
  var tokenKey = "mibot:" + store + ":resume_token";
  var openKey = "mibot:" + store + ":open";

  var css =
    "#mibot-launcher{position:fixed;right:20px;bottom:20px;height:48px;padding:0 18px;border:0;border-radius:24px;background:#ff5000;color:#fff;" +
    "font:600 14px/1 system-ui,sans-serif;box-shadow:0 4px 12px rgba(0,0,0,.2);cursor:pointer;z-index:2147483000}" +
    "#mibot-launcher[hidden],#mibot[hidden]{display:none}" +
    "#mibot-launcher .mibot-unread{display:inline-block;min-width:18px;margin-left:6px;padding:2px 4px;border-radius:9px;background:#fff;color:#ff5000;font-size:12px;box-sizing:border-box}" +
    "#mibot-launcher .mibot-unread:empty{display:none}" +
    "#mibot{position:fixed;right:20px;bottom:20px;width:340px;max-width:calc(100vw - 40px);height:480px;max-height:calc(100vh - 40px);display:flex;flex-direction:column;" +
    "background:#fff;border:1px solid #d0d7de;border-radius:12px;box-shadow:0 8px 24px rgba(0,0,0,.15);font:14px/1.45 system-ui,sans-serif;z-index:2147483000}" +
    "#mibot header{display:flex;align-items:center;gap:4px;padding:6px 6px 6px 14px;background:#ff5000;color:#fff;border-radius:12px 12px 0 0;font-weight:600;font-size:14px}" +
    "#mibot header span{flex:1;min-width:0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}" +
    "#mibot header button{width:32px;height:32px;border:0;border-radius:6px;background:none;color:#fff;font:20px/1 system-ui,sans-serif;cursor:pointer}" +
    "#mibot header button:hover,#mibot header button:focus-visible{background:rgba(255,255,255,.2)}" +
    "@media (max-width:480px){#mibot{inset:0;width:100%;max-width:none;height:100%;max-height:none;border:0;border-radius:0}" +
    "#mibot header{border-radius:0}#mibot form button{border-radius:0}#mibot input{font-size:16px}" +
    "#mibot-launcher{right:12px;bottom:12px}}" +
    "#mibot .mibot-log{flex:1;overflow-y:auto;padding:10px;display:flex;flex-direction:column;gap:6px}" +
    "#mibot .mibot-msg{max-width:85%;padding:6px 10px;border-radius:10px;white-space:pre-wrap;word-break:break-word}" +
    "#mibot .mibot-msg[data-role=shopper]{align-self:flex-end;background:#ffe8dc}" +
    "#mibot .mibot-msg[data-role=bot]{align-self:flex-start;background:#f2f4f7}" +
    "#mibot .mibot-msg[data-role=agent]{align-self:flex-start;background:#e3f2e6}" +
    "#mibot .mibot-msg[data-role=store]{align-self:stretch;background:#fff4e5;border:1px solid #f0c36d}" +
    "#mibot .mibot-notice{align-self:center;color:#57606a;font-size:12px;text-align:center}" +
    "#mibot .mibot-chips{display:flex;flex-wrap:wrap;gap:4px}" +
    "#mibot .mibot-chips button,#mibot .mibot-rate button{border:1px solid #ff5000;background:#fff;color:#ff5000;border-radius:12px;padding:2px 8px;cursor:pointer}" +
    "#mibot .mibot-vote{align-self:flex-start;display:flex;gap:4px;font-size:12px;color:#57606a}" +
    "#mibot .mibot-vote button{border:0;background:none;cursor:pointer;padding:0 2px;font-size:14px}" +
    "#mibot .mibot-vote[data-state=noted] button{display:none}" +
    "#mibot form{display:flex;border-top:1px solid #d0d7de}" +
    "#mibot input{flex:1;border:0;padding:10px;font:inherit;outline:none}" +
    "#mibot form button{border:0;background:#ff5000;color:#fff;padding:0 16px;font:inherit;cursor:pointer;border-radius:0 0 12px 0}";

  var root = document.createElement("div");
  root.id = "mibot";
  root.setAttribute("role", "dialog");
  root.setAttribute("aria-label", "Customer service chat");
  var style = document.createElement("style");
  style.textContent = css;
  var header = document.createElement("header");
  var title = document.createElement("span");
  title.textContent = "在线客服 · Customer service";
  function headerButton(id, text, label) {
    var b = document.createElement("button");
    b.type = "button";
    b.id = id;
    b.textContent = text;
    b.title = label;
    b.setAttribute("aria-label", label);
    return b;
  }
  var minimise = headerButton("mibot-minimise", "\u2013", "最小化 Minimise");
  var close = headerButton("mibot-close", "\u00d7", "关闭 Close");
  header.append(title, minimise, close);
  var launcher = document.createElement("button");
  launcher.id = "mibot-launcher";
  launcher.type = "button";
  launcher.setAttribute("aria-label", "在线客服 Customer service chat");
  var unread = document.createElement("span");
  unread.className = "mibot-unread";
  launcher.append(document.createTextNode("在线客服 Chat"), unread);
  var log = document.createElement("div");
  log.className = "mibot-log";
  log.setAttribute("aria-live", "polite");
  var form = document.createElement("form");
  var input = document.createElement("input");
  input.id = "mibot-input";
  input.placeholder = "输入您的问题… Type your question";
  input.maxLength = 2000;
  input.autocomplete = "off";
  var send = document.createElement("button");
  send.id = "mibot-send";
  send.type = "submit";
  send.textContent = "发送";
  form.append(input, send);
  root.append(style, header, log, form);

  function mount() {
    document.body.append(launcher, root);
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  function scroll() {
    log.scrollTop = log.scrollHeight;
  }

  // While the window is not open, what people write lights the button.
  function noteUnread() {
    if (!root.hidden) return;
    unread.textContent = String(Number(unread.textContent || 0) + 1);
  }

  function bubble(role, text) {
    var el = document.createElement("div");
    el.className = "mibot-msg";
    el.dataset.role = role;
    el.textContent = text;
    log.appendChild(el);
    scroll();
    return el;
  }

  function notice(text, kind) {
    var el = document.createElement("div");
    el.className = "mibot-notice";
    if (kind) el.dataset.kind = kind;
    el.textContent = text;
    log.appendChild(el);
    scroll();
    return el;
  }

  function chips(items, onPick) {
    if (!items || !items.length) return;
    var box = document.createElement("div");
    box.className = "mibot-chips";
    items.forEach(function (item) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = item;
      b.addEventListener("click", function () { onPick(item); });
      box.appendChild(b);
    });
    log.appendChild(box);
    scroll();
  }

  var ws = null;
  var counter = 0;
  var pending = [];
  var queueNotice = null;

  function say(text) {
    text = text.trim();
    if (!text) return;
    var id = "w" + Date.now().toString(36) + "-" + counter++;
    bubble("shopper", text);
    var frame = JSON.stringify({ type: "message", id: id, text: text });
    if (ws && ws.readyState === WebSocket.OPEN && ws.mibotReady) ws.send(frame);
    else pending.push(frame);
  }

  // A thumb drawn as SVG: emoji need a font many systems lack, and show as boxes there.
  function thumb(up) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("aria-hidden", "true");
    if (!up) svg.setAttribute("transform", "rotate(180)");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", "M2 10h4v11H2zM8 21h9.3a2 2 0 0 0 2-1.6l1.6-7.2A2 2 0 0 0 19 10h-5.3l.8-4.2a1.6 1.6 0 0 0-2.7-1.5L8 9v12z");
    path.setAttribute("fill", "currentColor");
    svg.appendChild(path);
    return svg;
  }

  var votes = {};
  function voteButtons(messageId) {
    var box = document.createElement("div");
    box.className = "mibot-vote";
    box.dataset.message = String(messageId);
    [[true, "up", "有帮助 Helpful"], [false, "down", "没帮助 Not helpful"]].forEach(function (v) {
      var b = document.createElement("button");
      b.type = "button";
      b.dataset.helpful = String(v[0]);
      b.appendChild(thumb(v[0]));
      b.title = v[2];
      b.setAttribute("aria-label", v[2]);
      b.addEventListener("click", function () {
        if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "feedback", message_id: messageId, helpful: v[0] }));
      });
      box.appendChild(b);
    });
    votes[messageId] = box;
    log.appendChild(box);
    scroll();
  }

  function rate(score) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "rate", score: score }));
  }

  var statusText = {
    waiting_for_agent: "正在为您转接人工客服… Connecting you with a person…",
    bot: "智能客服为您服务。You are chatting with the assistant again.",
    closed: "会话已结束。This conversation has ended."
  };

  function onEvent(ev) {
    switch (ev.type) {
      case "welcome":
        localStorage.setItem(tokenKey, ev.resume_token);
        log.textContent = "";
        (ev.history || []).forEach(function (m) { bubble(m.role, m.text); });
        if (!ev.history || !ev.history.length) bubble("bot", "您好！有什么可以帮您？Hi! How can I help?");
        ws.mibotReady = true;
        pending.splice(0).forEach(function (f) { ws.send(f); });
        break;
      case "reply":
        bubble("bot", ev.text);
        noteUnread();
        if (ev.kind === "answer") voteButtons(ev.message_id);
        chips(ev.suggestions, say);
        break;
      case "feedback_noted":
        var box = votes[ev.message_id];
        if (box) {
          box.dataset.state = "noted";
          box.appendChild(document.createTextNode("谢谢反馈 Thanks for the feedback"));
        }
        break;
      case "agent_message":
        bubble("agent", ev.agent + "：" + ev.text);
        noteUnread();
        break;
      case "store_message":
        bubble("store", ev.text);
        break;
      case "status":
        // A person is here: the notice about waiting (or about opening hours) no longer holds.
        if (ev.status === "with_agent" && queueNotice) { queueNotice.remove(); queueNotice = null; }
        if (ev.status === "with_agent") notice("人工客服 " + ev.agent + " 为您服务。" + ev.agent + " is here to help.", "with_agent");
        else if (statusText[ev.status]) notice(statusText[ev.status], ev.status);
        if (ev.status === "closed") localStorage.removeItem(tokenKey);
        break;
      case "queue":
        if (queueNotice) queueNotice.remove();
        queueNotice = notice(ev.text, "queue");
        break;
      case "rate_request":
        notice(ev.text, "rate_request");
        var box = document.createElement("div");
        box.className = "mibot-rate";
        [1, 2, 3, 4, 5].forEach(function (n) {
          var b = document.createElement("button");
          b.type = "button";
          b.dataset.score = String(n);
          b.textContent = n + "★";
          b.addEventListener("click", function () { rate(n); box.remove(); });
          box.appendChild(b);
        });
        log.appendChild(box);
        scroll();
        break;
      case "rated":
        notice("感谢您的评价！Thank you for your rating.", "rated");
        break;
      case "error":
        if (ev.code === "unknown_resume_token" || ev.code === "conversation_closed") {
          localStorage.removeItem(tokenKey);
          ws.send(JSON.stringify({ type: "hello" }));
        } else {
          notice(ev.message, "error");
        }
        break;
    }
  }

  var retry = 500;
  var wanted = false; // the shopper has the chat open, or a conversation is going on
  function connect() {
    if (!wanted || ws) return;
    ws = new WebSocket(wsUrl);
    ws.mibotReady = false;
    ws.addEventListener("open", function () {
      retry = 500;
      var hello = { type: "hello" };
      var token = localStorage.getItem(tokenKey);
      if (token) hello.resume_token = token;
      if (product) hello.product = product;
      if (shopperId) hello.shopper = shopperId;
      if (shopperId && shopperSignature) hello.shopper_signature = shopperSignature;
      ws.send(JSON.stringify(hello));
    });
    ws.addEventListener("message", function (m) {
      try { onEvent(JSON.parse(m.data)); } catch (e) { /* not ours */ }
    });
    ws.addEventListener("close", function () {
      ws = null;
      if (!wanted) return;
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    });
  }

  // Opens the window (connecting if need be), or shows the button instead.
  function show(open) {
    root.hidden = !open;
    launcher.hidden = open;
    sessionStorage.setItem(openKey, open ? "1" : "");
    if (open) {
      unread.textContent = "";
      wanted = true;
      connect();
      scroll();
      input.focus();
    }
  }
  launcher.addEventListener("click", function () { show(true); });
  minimise.addEventListener("click", function () { show(false); launcher.focus(); });
  // Closing also hangs up: the conversation can be taken up again (the button reconnects).
  close.addEventListener("click", function () {
    show(false);
    wanted = false;
    if (ws) ws.close();
    launcher.focus();
  });
  root.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { show(false); launcher.focus(); }
  });

  show(sessionStorage.getItem(openKey) === "1");
  if (localStorage.getItem(tokenKey)) {
    wanted = true;
    connect();
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    say(input.value);
    input.value = "";
  });
})();
