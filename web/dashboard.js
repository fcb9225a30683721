// mibot's merchant dashboard: the store's measures, charts drawn as SVG, the clusters of
// unanswered questions with their drafts (accept or dismiss), the review list and the
// most-asked entries. It reads the merchant API with the store's key; every text is set with
// textContent.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var SVG = "http://www.w3.org/2000/svg";
  var store = null;
  var key = null;
  var saved = "mibot:dashboard";

  function flash(text) {
    $("flash").textContent = text;
    clearTimeout(flash.t);
    flash.t = setTimeout(function () { $("flash").textContent = ""; }, 4000);
  }

  function el(tag, text, className) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (className) e.className = className;
    return e;
  }

  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function range() {
    var parts = $("range").value.split("|");
    return { since: parts[0], bucket: parts[1] };
  }

  function api(path, options) {
    options = options || {};
    options.headers = Object.assign({ Authorization: "Bearer " + key }, options.headers || {});
    return fetch("/api/v1/stores/" + encodeURIComponent(store) + path, options).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(body.message || ("HTTP " + r.status));
        return body;
      });
    });
  }

  // One row across the table saying it has nothing to show.
  function emptyRow(body, text, columns) {
    var tr = el("tr");
    var td = el("td", text);
    td.colSpan = columns;
    tr.appendChild(td);
    body.appendChild(tr);
  }

  function pct(x) { return x == null ? "–" : (100 * x).toFixed(1) + "%"; }
  function num(x, digits) { return x == null ? "–" : Number(x).toFixed(digits || 0); }

  function tiles(r) {
    var box = $("tiles");
    box.textContent = "";
    [
      ["sessions", r.sessions, "sessions"],
      ["resolution", pct(r.resolution_rate), "bot resolution rate"],
      ["handoffs", Object.values(r.escalations).reduce(function (a, b) { return a + b; }, 0), "handed to people"],
      ["clarify", pct(r.clarify_rate), "asked back"],
      ["csat", num(r.human.csat, 2), "CSAT, people (" + r.human.ratings + ")"],
      ["helpful", pct(r.bot_feedback.helpful_rate), "bot answers helpful"],
      ["response", r.human.first_response_seconds == null ? "–" : num(r.human.first_response_seconds) + " s", "first response, people"]
    ].forEach(function (t) {
      var tile = el("div", null, "tile");
      tile.dataset.tile = t[0];
      tile.appendChild(el("div", String(t[1]), "v"));
      tile.appendChild(el("div", t[2], "k"));
      box.appendChild(tile);
    });
  }

  // Gridlines at quarters of the height, labelled by `label(fraction)`.
  function grid(chart, w, h, pad, label) {
    [0, 0.25, 0.5, 0.75, 1].forEach(function (f) {
      var y = h - pad - (h - pad * 2) * f;
      chart.appendChild(svg("line", { x1: pad, y1: y, x2: w - pad, y2: y, stroke: f ? "#eaeef2" : "#d0d7de" }));
      chart.appendChild(svg("text", { x: pad - 4, y: y + 4, "text-anchor": "end" }, label(f)));
    });
  }

  function volume(series) {
    var chart = $("volume");
    chart.textContent = "";
    var w = 600, h = 220, pad = 32;
    var max = Math.max(1, Math.max.apply(null, series.map(function (p) { return p.sessions; })));
    // Round the scale up to a multiple of 4 so that the gridlines fall on whole sessions.
    max = Math.ceil(max / 4) * 4;
    grid(chart, w, h, pad, function (f) { return String(Math.round(max * f)); });
    var step = (w - pad * 2) / Math.max(1, series.length);
    // Bars stay bar-sized however few the buckets, and stand in the middle of theirs.
    var bw = Math.min(step * 0.7, 48);
    series.forEach(function (p, i) {
      var x = pad + i * step + (step - bw) / 2;
      var hs = (h - pad * 2) * p.sessions / max;
      var hr = (h - pad * 2) * p.resolved / max;
      chart.appendChild(svg("rect", { x: x, y: h - pad - hs, width: bw, height: hs, fill: "#ffd3bd", "class": "bar-sessions" }));
      chart.appendChild(svg("rect", { x: x, y: h - pad - hr, width: bw, height: hr, fill: "#ff5000", "class": "bar-resolved" }));
      if (series.length <= 12 && p.sessions) {
        chart.appendChild(svg("text", { x: x + bw / 2, y: h - pad - hs - 4, "text-anchor": "middle", "class": "value" }, p.resolved + " / " + p.sessions));
      }
      if (series.length <= 31 || i % Math.ceil(series.length / 12) === 0) {
        chart.appendChild(svg("text", { x: x + bw / 2, y: h - 10, "text-anchor": "middle" }, p.label));
      }
    });
  }

  // Resolution rate (0–100%) and people's CSAT (1–5) per bucket, as two lines on one scale.
  function rates(series) {
    var chart = $("rates");
    chart.textContent = "";
    var w = 1200, h = 200, pad = 40;
    grid(chart, w, h, pad, function (f) { return Math.round(100 * f) + "%"; });
    // One bucket stands in the middle; more spread across the width.
    var step = (w - pad * 2) / Math.max(1, series.length - 1);
    var xAt = function (i) { return series.length === 1 ? w / 2 : pad + i * step; };
    series.forEach(function (p, i) {
      if (series.length <= 31 || i % Math.ceil(series.length / 12) === 0) {
        chart.appendChild(svg("text", { x: xAt(i), y: h - 12, "text-anchor": "middle" }, p.label));
      }
    });
    function line(value, shown, color, cls) {
      var points = [];
      series.forEach(function (p, i) {
        var v = value(p);
        if (v == null) return;
        points.push([xAt(i), h - pad - (h - pad * 2) * v, shown(p)]);
      });
      if (!points.length) return;
      if (points.length > 1) {
        chart.appendChild(svg("polyline", { points: points.map(function (q) { return q[0].toFixed(1) + "," + q[1].toFixed(1); }).join(" "), fill: "none", stroke: color, "stroke-width": 2, "class": cls }));
      }
      points.forEach(function (q) {
        chart.appendChild(svg("circle", { cx: q[0], cy: q[1], r: points.length > 1 ? 3 : 5, fill: color, "class": cls + "-point" }));
        // With few points, each says its value (on its left near the right edge).
        var right = q[0] > w - pad - 60;
        if (points.length <= 12) chart.appendChild(svg("text", { x: q[0] + (right ? -8 : 8), y: q[1] - 6, fill: color, "class": "value", "text-anchor": right ? "end" : "start" }, q[2]));
      });
    }
    line(function (p) { return p.resolution_rate; }, function (p) { return pct(p.resolution_rate); }, "#ff5000", "line-resolution");
    line(function (p) { return p.csat == null ? null : (p.csat - 1) / 4; }, function (p) { return num(p.csat, 2); }, "#0969da", "line-csat");
  }

  function alerts(list) {
    var body = $("alerts").querySelector("tbody");
    body.textContent = "";
    if (!list.length) emptyRow(body, "No spikes in this range.", 6);
    list.forEach(function (a) {
      var tr = el("tr", undefined, a.open ? "open" : "");
      tr.dataset.alert = String(a.id);
      var topic = el("td");
      topic.appendChild(el("strong", a.label));
      a.samples.slice(0, 3).forEach(function (s) { topic.appendChild(el("div", s, "sample")); });
      tr.appendChild(topic);
      tr.appendChild(el("td", String(a.count)));
      tr.appendChild(el("td", num(a.expected, 1)));
      tr.appendChild(el("td", new Date(a.started_at).toLocaleString()));
      var status = (a.open ? "ongoing" : "over") + (a.webhook ? " · webhook " + a.webhook : "");
      tr.appendChild(el("td", status));
      var act = el("td");
      var text = el("input");
      text.placeholder = "A message to those shoppers";
      var send = el("button", "Send", "notify");
      send.type = "button";
      send.addEventListener("click", function () {
        if (!text.value.trim()) { flash("Write the message first"); return; }
        api("/alerts/" + a.id + "/message", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ text: text.value })
        }).then(function (r) { flash("Sent to " + r.conversations + " open conversations"); text.value = ""; })
          .catch(function (e) { flash(e.message); });
      });
      act.append(text, send);
      tr.appendChild(act);
      body.appendChild(tr);
    });
  }

  // Every handoff reason (domain::HandoffReason) in the merchant's words.
  var REASONS = window.mibotStaffText.en.reasons;

  function reasons(escalations) {
    var chart = $("reasons");
    chart.textContent = "";
    var entries = Object.keys(escalations).map(function (k) { return [k, escalations[k]]; });
    if (!entries.length) {
      chart.appendChild(svg("text", { x: 10, y: 30 }, "No handoffs in this range"));
      return;
    }
    var max = Math.max.apply(null, entries.map(function (e) { return e[1]; }));
    entries.forEach(function (e, i) {
      var y = 14 + i * 30;
      chart.appendChild(svg("text", { x: 4, y: y + 12 }, REASONS[e[0]] || e[0]));
      chart.appendChild(svg("rect", { x: 180, y: y, width: 180 * e[1] / max, height: 18, fill: "#0969da", "class": "bar-reason" }));
      chart.appendChild(svg("text", { x: 186 + 180 * e[1] / max, y: y + 13 }, String(e[1])));
    });
  }

  function clusters(list) {
    var body = $("clusters").querySelector("tbody");
    body.textContent = "";
    if (!list.length) emptyRow(body, "Nothing unanswered in this range.", 5);
    list.forEach(function (c) {
      var tr = el("tr");
      tr.dataset.cluster = c.id;
      var qs = el("td");
      c.samples.forEach(function (s) { qs.appendChild(el("div", s)); });
      tr.appendChild(qs);
      tr.appendChild(el("td", String(c.size)));
      tr.appendChild(el("td", pct(c.handed_off_share)));
      var answerCell = el("td");
      var answer = el("textarea");
      answer.value = c.draft.answer || "";
      answer.placeholder = "Write the answer";
      answer.className = "draft-answer";
      // No agent answered: the nearest entry's answer, to check and edit, marked as such.
      var proposal = !c.draft.answer && c.draft.proposal;
      if (proposal) {
        answer.value = proposal.answer;
        answer.dataset.proposed = "true";
        answerCell.appendChild(el("div", "Proposed from \u201c" + proposal.question + "\u201d (" + proposal.entry +
          "): check and edit it before accepting.", "proposal-note"));
        answer.addEventListener("input", function () { delete answer.dataset.proposed; }, { once: true });
      }
      answerCell.appendChild(answer);
      tr.appendChild(answerCell);
      var act = el("td");
      var accept = el("button", "Accept", "accept");
      accept.type = "button";
      accept.addEventListener("click", function () {
        var since = range().since;
        api("/clusters/" + encodeURIComponent(c.id) + "/accept?since=" + since, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ answer: answer.value })
        }).then(function (r) { flash("Added to the pack: version " + r.version.version); load(); })
          .catch(function (e) { flash(e.message); });
      });
      var dismiss = el("button", "Dismiss", "dismiss");
      dismiss.type = "button";
      dismiss.addEventListener("click", function () {
        api("/clusters/" + encodeURIComponent(c.id) + "/dismiss?since=" + range().since, { method: "POST" })
          .then(function () { flash("Dismissed"); load(); })
          .catch(function (e) { flash(e.message); });
      });
      act.append(accept, dismiss);
      tr.appendChild(act);
      body.appendChild(tr);
    });
  }

  function reviews(list) {
    var body = $("reviews").querySelector("tbody");
    body.textContent = "";
    list.forEach(function (r) {
      var tr = el("tr");
      [r.question, r.answer, r.source === "agent" ? "agent " + (r.author || "") : "shopper 👎", r.note || ""].forEach(function (t) {
        tr.appendChild(el("td", t));
      });
      body.appendChild(tr);
    });
  }

  function top(list) {
    var ol = $("top");
    ol.textContent = "";
    if (!list.length) ol.appendChild(el("li", "Nothing answered in this range.", "empty"));
    // The question the entry answers (or the product's name), with its id small beside it.
    list.slice(0, 10).forEach(function (e) {
      var li = el("li");
      li.dataset.entry = e.entry;
      li.appendChild(el("span", e.question || e.entry, "entry-question"));
      li.appendChild(el("span", " · " + e.count, "entry-count"));
      if (e.question) li.appendChild(el("small", " " + e.entry, "entry-id"));
      ol.appendChild(li);
    });
  }

  function load() {
    var r = range();
    return Promise.all([
      api("/insights?since=" + r.since + "&bucket=" + r.bucket),
      api("/clusters?since=" + r.since),
      api("/reviews?since=" + r.since),
      api("/alerts?since=" + r.since)
    ]).then(function (all) {
      var report = all[0].report;
      tiles(report);
      volume(report.series);
      reasons(report.escalations);
      top(report.top_entries);
      clusters(all[1].clusters);
      reviews(all[2].reviews);
      alerts(all[3].alerts);
      rates(report.series);
      document.body.dataset.loaded = "true";
    });
  }

  function open(s, k) {
    store = s;
    key = k;
    return api("").then(function () {
      sessionStorage.setItem(saved, JSON.stringify({ store: s, key: k }));
      $("signin").hidden = true;
      $("board").hidden = false;
      $("store-name").textContent = s;
      return load();
    }).catch(function (e) {
      $("login-error").textContent = e.message;
    });
  }

  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    $("login-error").textContent = "";
    open($("store").value.trim(), $("key").value.trim());
  });
  $("range").addEventListener("change", function () { if (key) load(); });
  // The conversations of the range as a spreadsheet: fetched with the key, saved as a file.
  $("export").addEventListener("click", function () {
    fetch("/api/v1/stores/" + encodeURIComponent(store) + "/conversations.csv?since=" + range().since, {
      headers: { Authorization: "Bearer " + key }
    }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.blob();
    }).then(function (blob) {
      var a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = store + "-conversations.csv";
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(a.href); }, 1000);
    }).catch(function (e) { flash(e.message); });
  });
  var remembered = sessionStorage.getItem(saved);
  if (remembered) {
    var s = JSON.parse(remembered);
    open(s.store, s.key);
  }
})();
