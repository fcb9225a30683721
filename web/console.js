// mibot's agent console: signs in on /ws/agent, shows the queue, the agent's chats with their
// transcripts (bot traces included), suggested answers and canned replies, and sends replies,
// transfers, closes and hand-backs. Every text is shown with textContent, never as HTML.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var ws = null;
  var me = null;
  var chats = new Map(); // conversation id -> { reason, messages: [], suggestions: [], unread }
  var current = null;
  var available = true;
  var tokenKey = "mibot:agent_token";
  var claiming = new Set(); // chats this agent claimed by hand: no "new chat" notice for them
  var waiting = []; // the queue as last sent
  var langKey = "mibot:console_lang";
  var texts = window.mibotStaffText;
  // The agent's choice, else the browser's language.
  var lang = localStorage.getItem(langKey) || (/^zh/i.test(navigator.language || "") ? "zh" : "en");

  // The text `key` in the console's language, with {0}, {1}… filled from the other arguments.
  function t(key) {
    var text = texts[lang][key];
    var args = arguments;
    return String(text).replace(/\{(\d)\}/g, function (_, i) { return args[Number(i) + 1]; });
  }

  // A word from one of the tables (reasons, roles…), or the code itself when it is not there.
  function word(table, code) { return (code && texts[lang][table][code]) || code || ""; }

  function reasonText(reason) { return word("reasons", reason); }

  // Where a bot answer came from: `intent:NAME`, `product:SKU` or an FAQ entry's id.
  function sourceText(matched) {
    var m = /^(intent|product):(.*)$/.exec(matched);
    if (m && m[1] === "product") return t("product", m[2]);
    if (m) return t("intent", word("intents", m[2]));
    return t("faq", matched);
  }

  // The product the shopper has in view: its name in the console's language, price and stock.
  function productText(p) {
    var name = typeof p.name === "string" ? p.name : (p.name[lang] || p.name.zh || p.name.en || p.sku);
    var price = Number(p.price).toLocaleString(lang === "zh" ? "zh-CN" : "en", { style: "currency", currency: p.currency || "CNY" });
    return [name, price, word("stock", p.stock), p.sku];
  }

  // Puts every fixed label of the page in the console's language.
  function applyLanguage() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    document.querySelectorAll("[data-text]").forEach(function (e) { e.textContent = t(e.dataset.text); });
    document.querySelectorAll("[data-placeholder]").forEach(function (e) { e.placeholder = t(e.dataset.placeholder); });
    $("lang").textContent = t("switchTo");
    $("lang").title = t("switchTitle");
    showConnection();
  }

  var connection = "offline";
  function showConnection() {
    $("conn").textContent = t(connection);
    $("conn").className = connection === "online" ? "badge online" : "badge";
    $("presence").textContent = available ? t("goOffline") : t("goOnline");
  }

  // HH:MM in local time, with the date when it is not today.
  function stamp(at) {
    if (at == null) return "";
    var d = new Date(Number(at));
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    var hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    if (d.toDateString() === new Date().toDateString()) return hm;
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hm;
  }

  function flash(text) {
    $("flash").textContent = text;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(function () { $("flash").textContent = ""; }, 4000);
  }

  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function short(id) { return String(id).slice(0, 8); }

  function send(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  function renderQueue() {
    var list = $("queue");
    list.textContent = "";
    $("queue-count").textContent = String(waiting.length);
    waiting.forEach(function (item) {
      var li = el("li");
      li.dataset.conversation = item.conversation_id;
      li.appendChild(el("div", "q", item.last_message || t("noMessage")));
      li.appendChild(el("div", "meta", reasonText(item.reason) + (item.group ? " · " + item.group : "") + " · " + t("waiting", item.waiting_seconds)));
      var claim = el("button", "claim", t("claim"));
      claim.type = "button";
      claim.addEventListener("click", function () {
        claiming.add(item.conversation_id);
        send({ type: "claim", conversation_id: item.conversation_id });
      });
      li.appendChild(claim);
      list.appendChild(li);
    });
  }

  function renderChats() {
    var list = $("chats");
    list.textContent = "";
    chats.forEach(function (chat, id) {
      var li = el("li", "chat-tab" + (id === current ? " active" : "") + (chat.unread ? " unread" : ""));
      li.dataset.conversation = id;
      var last = chat.messages.length ? chat.messages[chat.messages.length - 1].text : "";
      li.appendChild(el("div", "", t("chat", short(id))));
      li.appendChild(el("div", "meta", last));
      li.addEventListener("click", function () { select(id); });
      list.appendChild(li);
    });
  }

  // The store's endpoint call behind a task reply: what was sent and what came back.
  function taskCall(call) {
    var details = el("details", "task");
    var outcome = call.error ? call.error : "HTTP " + call.status;
    details.appendChild(el("summary", null, call.name + " · " + outcome + " · " + call.ms + " ms"));
    details.appendChild(el("pre", null, JSON.stringify(call.request, null, 2)));
    if (call.response !== undefined) details.appendChild(el("pre", null, JSON.stringify(call.response, null, 2)));
    return details;
  }

  function renderTranscript() {
    var chat = chats.get(current);
    var box = $("transcript");
    box.textContent = "";
    if (!chat) return;
    chat.messages.forEach(function (m) {
      var div = el("div", "msg");
      div.dataset.role = m.role;
      var who = m.role === "agent" ? (m.author || word("roles", "agent")) : word("roles", m.role);
      var failed = m.role === "bot" && m.kind === "action_failed";
      var fallback = m.role === "bot" && (m.kind === "fallback" || failed);
      if (failed) who += " · " + t("actionFailed");
      else if (fallback) who += " · " + t("fallback");
      else if (m.role === "bot" && m.trace && m.trace.matched) who += " · " + sourceText(m.trace.matched) + (m.trace.score != null ? " (" + Number(m.trace.score).toFixed(2) + ")" : "");
      if (fallback) div.dataset.kind = "fallback";
      var head = el("span", "who", who);
      head.appendChild(el("time", "at", stamp(m.at)));
      div.appendChild(head);
      div.appendChild(document.createTextNode(m.text));
      if (m.role === "bot" && m.trace && m.trace.task) div.appendChild(taskCall(m.trace.task));
      if (m.role === "bot" && m.id != null) {
        var flag = el("button", "flag", m.flagged ? t("flagged") : t("flag"));
        flag.type = "button";
        flag.disabled = !!m.flagged;
        flag.addEventListener("click", function () {
          var note = window.prompt(t("flagPrompt"), "");
          if (note === null) return;
          send({ type: "flag", conversation_id: current, message_id: m.id, note: note });
          m.flagged = true;
          renderTranscript();
        });
        div.appendChild(flag);
      }
      box.appendChild(div);
    });
    box.scrollTop = box.scrollHeight;
  }

  function renderSuggestions() {
    var chat = chats.get(current);
    var list = $("suggestions");
    list.textContent = "";
    (chat ? chat.suggestions : []).forEach(function (s) {
      var li = el("li");
      li.appendChild(el("div", "q", s.question));
      li.appendChild(el("div", "a", s.answer));
      li.title = t("useAnswer");
      li.addEventListener("click", function () { $("reply").value = s.answer; $("reply").focus(); });
      list.appendChild(li);
    });
  }

  function select(id) {
    current = id;
    var chat = chats.get(id);
    if (chat) chat.unread = false;
    $("empty").hidden = !!chat;
    $("open").hidden = !chat;
    if (chat) {
      $("chat-title").textContent = t("chat", short(id));
      $("chat-reason").textContent = reasonText(chat.reason);
      var shown = $("chat-product");
      shown.textContent = "";
      shown.hidden = !chat.product;
      if (chat.product) {
        var parts = productText(chat.product);
        shown.appendChild(document.createTextNode(t("productInView") + ": "));
        shown.appendChild(el("strong", "", parts[0]));
        shown.appendChild(document.createTextNode(" · " + parts.slice(1).join(" · ")));
      }
    }
    renderChats();
    renderTranscript();
    renderSuggestions();
  }

  function drop(id) {
    chats.delete(id);
    if (current === id) {
      current = null;
      var next = chats.keys().next();
      select(next.done ? null : next.value);
    } else {
      renderChats();
    }
  }

  // A spike: shoppers are asking about one thing far more than usual. One line per alert.
  function showAlert(alert) {
    var list = $("alerts");
    if (list.querySelector('[data-alert="' + alert.id + '"]')) return;
    var li = el("li", "");
    li.dataset.alert = String(alert.id);
    li.appendChild(el("strong", "", t("spike")));
    li.appendChild(document.createTextNode(t("spikeText", alert.label, alert.count, alert.expected.toFixed(1))));
    li.appendChild(el("span", "samples", (alert.samples || []).slice(0, 3).join(" · ")));
    var dismiss = el("button", "", t("dismiss"));
    dismiss.type = "button";
    dismiss.addEventListener("click", function () { li.remove(); list.hidden = !list.children.length; });
    li.appendChild(dismiss);
    list.appendChild(li);
    list.hidden = false;
    flash(t("spike") + ": " + alert.label);
  }

  function onEvent(ev) {
    switch (ev.type) {
      case "welcome":
        me = ev;
        $("signin").hidden = true;
        $("desk").hidden = false;
        $("me").textContent = ev.agent + " · " + ev.store;
        connection = "online";
        showConnection();
        $("presence").hidden = false;
        var canned = $("canned");
        canned.textContent = "";
        (ev.canned_replies || []).forEach(function (text) {
          var li = el("li", "", text);
          li.addEventListener("click", function () { $("reply").value = text; $("reply").focus(); });
          canned.appendChild(li);
        });
        break;
      case "queue":
        waiting = ev.waiting;
        renderQueue();
        break;
      case "presence":
        available = ev.online;
        connection = ev.online ? "online" : "away";
        showConnection();
        break;
      case "assigned":
        chats.set(ev.conversation_id, { reason: ev.reason, messages: ev.transcript, suggestions: ev.suggestions, product: ev.product, unread: true });
        if (claiming.has(ev.conversation_id)) claiming.delete(ev.conversation_id);
        else flash(t("assigned"));
        if (!current) select(ev.conversation_id);
        else renderChats();
        break;
      case "shopper_message":
        var chat = chats.get(ev.conversation_id);
        if (!chat) break;
        chat.messages.push({ role: "shopper", text: ev.text, at: ev.at });
        chat.suggestions = ev.suggestions;
        chat.unread = ev.conversation_id !== current;
        if (ev.conversation_id === current) { renderTranscript(); renderSuggestions(); }
        renderChats();
        break;
      case "sent":
        break;
      case "flagged":
        flash(t("flaggedNote"));
        break;
      case "unassigned":
        flash(t("left", short(ev.conversation_id), word("why", ev.why)));
        drop(ev.conversation_id);
        break;
      case "released":
        flash(ev.status === "closed" ? t("closed") : t("handedBack"));
        drop(ev.conversation_id);
        break;
      case "alert":
        showAlert(ev.alert);
        break;
      case "error":
        if (!me) {
          $("login-error").textContent = ev.message;
          sessionStorage.removeItem(tokenKey);
        } else {
          claiming.clear();
          flash(ev.message);
        }
        break;
    }
  }

  function connect(token, auto) {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/agent";
    ws = new WebSocket(url);
    ws.addEventListener("open", function () { send({ type: "login", token: token, auto_assign: auto }); });
    ws.addEventListener("message", function (m) { onEvent(JSON.parse(m.data)); });
    ws.addEventListener("close", function () {
      connection = "offline";
      showConnection();
      if (me) setTimeout(function () { connect(token, auto); }, 1000);
    });
  }

  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    $("login-error").textContent = "";
    var token = $("token").value.trim();
    sessionStorage.setItem(tokenKey, token);
    connect(token, $("auto").checked);
  });

  $("reply-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var text = $("reply").value.trim();
    if (!text || !current) return;
    send({ type: "reply", conversation_id: current, text: text });
    chats.get(current).messages.push({ role: "agent", author: me && me.agent, text: text, at: Date.now() });
    $("reply").value = "";
    renderTranscript();
  });
  $("reply").addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("reply-form").requestSubmit(); }
  });
  $("presence").addEventListener("click", function () { send({ type: "presence", online: !available }); });
  $("close").addEventListener("click", function () { if (current) send({ type: "close", conversation_id: current }); });
  $("handback").addEventListener("click", function () { if (current) send({ type: "hand_back", conversation_id: current }); });
  $("transfer").addEventListener("click", function () {
    var to = $("transfer-to").value.trim();
    if (!current || !to) return;
    var frame = { type: "transfer", conversation_id: current };
    if (to.indexOf("group:") === 0) frame.to_group = to.slice(6); else frame.to_agent = to;
    send(frame);
  });

  $("lang").addEventListener("click", function () {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem(langKey, lang);
    applyLanguage();
    renderQueue();
    if (me) select(current);
  });
  applyLanguage();

  var saved = sessionStorage.getItem(tokenKey);
  if (saved) connect(saved, true);
})();
