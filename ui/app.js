// triggerd console (SPEC section 12). Plain JavaScript, no framework.
// Every value that comes from an event, a trigger or an upstream answer is
// put into the page as text (textContent / createTextNode), never as HTML.
"use strict";
(function () {
  var KEY = "triggerd.adminToken";
  var REFRESH_MS = 3000;
  var token = sessionStorage.getItem(KEY);
  var timer = null;
  var openId = null;
  var $ = function (id) { return document.getElementById(id); };

  // ---- small DOM helpers (text only) ----
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function td(tr, content, label) {
    var c = document.createElement("td");
    if (content instanceof Node) c.appendChild(content);
    else c.textContent = content === null || content === undefined ? "—" : String(content);
    if (label) c.setAttribute("data-label", label);
    tr.appendChild(c);
    return c;
  }
  function badge(s) {
    var cls = /^[a-z]+$/.test(String(s)) ? "state state-" + s : "state";
    return el("span", s, cls);
  }
  // An RFC 3339 time in the viewer's local time, the UTC value on hover.
  function time(iso) {
    if (!iso) return el("span", "—");
    var d = new Date(iso);
    var t = el("time", isNaN(d) ? iso : d.toLocaleString());
    t.setAttribute("datetime", String(iso));
    t.title = isNaN(d) ? String(iso) : d.toISOString().replace(".000Z", "Z") + " (UTC)";
    return t;
  }
  // Only http(s) links are made links; anything else is shown as text.
  function safeHref(h) {
    if (typeof h !== "string") return null;
    try {
      var u = new URL(h, location.href);
      return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
    } catch (e) { return null; }
  }
  function link(href, text) {
    var ok = safeHref(href);
    if (!ok) return el("span", text || href || "—");
    var a = el("a", text || href);
    a.href = ok;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }
  function field(dl, name, value) {
    dl.appendChild(el("dt", name));
    var dd = document.createElement("dd");
    if (value instanceof Node) dd.appendChild(value);
    else dd.textContent = value === null || value === undefined ? "—" : String(value);
    dl.appendChild(dd);
    return dd;
  }
  function status(msg) { $("status").textContent = msg || ""; }

  // ---- the admin API ----
  function api(method, path) {
    return fetch(path, {
      method: method,
      headers: { "Authorization": "Bearer " + token, "Accept": "application/json" },
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer"
    }).then(function (r) {
      return r.text().then(function (t) {
        var j = null;
        try { j = t ? JSON.parse(t) : null; } catch (e) { j = null; }
        if (r.status === 401) { signOut("The daemon refused the admin token (401)."); throw new Error("401"); }
        if (!r.ok) {
          var err = new Error((j && j.error) || ("HTTP " + r.status));
          err.status = r.status;
          throw err;
        }
        return j;
      });
    });
  }

  // ---- /metrics (Prometheus text format) ----
  function parseMetrics(text) {
    var out = [];
    text.split("\n").forEach(function (line) {
      if (!line || line.charAt(0) === "#") return;
      var m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) return;
      var labels = {};
      var re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g, l;
      while ((l = re.exec(m[3] || "")) !== null)
        labels[l[1]] = l[2].replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
      out.push({ name: m[1], labels: labels, value: Number(m[4]) });
    });
    return out;
  }
  function loadMetrics() {
    return fetch("/metrics", { cache: "no-store", credentials: "omit" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (t) { renderMetrics(parseMetrics(t)); });
  }
  function renderMetrics(ms) {
    var g = $("gauges");
    clear(g);
    var events = {};
    var byTrigger = {};
    var gauges = { pending: null, followed: null };
    ms.forEach(function (m) {
      if (m.name === "triggerd_events_total") events[m.labels.result] = m.value;
      else if (m.name === "triggerd_deliveries_pending") gauges.pending = m.value;
      else if (m.name === "triggerd_dbt_runs_followed") gauges.followed = m.value;
      else if (m.name === "triggerd_build_info") $("version").textContent = "v" + (m.labels.version || "");
      else if (m.name === "triggerd_deliveries_total" || m.name === "triggerd_dbt_runs_total") {
        var t = byTrigger[m.labels.trigger] = byTrigger[m.labels.trigger] || { runs: {} };
        if (m.name === "triggerd_deliveries_total") t[m.labels.outcome] = m.value;
        else t.runs[m.labels.status] = m.value;
      }
    });
    function gauge(name, v, id) {
      var d = el("div");
      d.id = id;
      d.appendChild(el("dt", name));
      d.appendChild(el("dd", v === null || v === undefined ? "—" : v));
      g.appendChild(d);
    }
    gauge("pending deliveries", gauges.pending, "g-pending");
    ["accepted", "duplicate", "unmatched", "rejected"].forEach(function (k) {
      gauge("events " + k, events[k] || 0, "g-events-" + k);
    });
    gauge("dbt runs followed", gauges.followed, "g-followed");
    var tb = $("outcomes").tBodies[0];
    clear(tb);
    Object.keys(byTrigger).sort().forEach(function (name) {
      var t = byTrigger[name], tr = document.createElement("tr");
      td(tr, name);
      td(tr, t.delivered || 0);
      td(tr, t.failed || 0);
      td(tr, t.cancelled || 0);
      td(tr, Object.keys(t.runs).sort().filter(function (s) { return t.runs[s] > 0; })
        .map(function (s) { return s + " " + t.runs[s]; }).join(", ") || "—");
      tb.appendChild(tr);
    });
  }

  // ---- triggers ----
  var knownTriggers = [];
  function loadTriggers() {
    return api("GET", "/v1/triggers").then(function (j) {
      var list = (j && j.triggers) || [];
      var tb = $("trigger-table").tBodies[0];
      clear(tb);
      list.forEach(function (t) {
        var tr = document.createElement("tr");
        tr.setAttribute("data-trigger", String(t.name));
        td(tr, t.name, "name");
        td(tr, t.active === false ? "no" : "yes", "active");
        td(tr, (t.method || "") + " " + (t.url || ""), "request");
        td(tr, Array.isArray(t.jobs) ? t.jobs.join(", ") : (Array.isArray(t.after) ? "after " + t.after.join(", ") : "—"), "jobs");
        td(tr, fanIn(t.waiting), "fan-in").className = "fanin";
        tb.appendChild(tr);
      });
      var names = list.map(function (t) { return String(t.name); });
      if (names.join("\n") !== knownTriggers.join("\n")) {
        knownTriggers = names;
        var sel = $("f-trigger"), keep = sel.value;
        while (sel.options.length > 1) sel.remove(1);
        names.forEach(function (n) { var o = el("option", n); o.value = n; sel.appendChild(o); });
        sel.value = names.indexOf(keep) >= 0 ? keep : "";
      }
    });
  }
  // A fan-in trigger's "waiting": {"done": [jobs], "missing": [jobs]}.
  function fanIn(w) {
    if (!w || typeof w !== "object") return el("span", "—");
    var done = Array.isArray(w.done) ? w.done : [], missing = Array.isArray(w.missing) ? w.missing : [];
    var of = done.length + missing.length;
    var box = el("span");
    var p = document.createElement("progress");
    p.max = of || 1;
    p.value = done.length;
    p.setAttribute("aria-label", "fan-in progress");
    box.appendChild(p);
    box.appendChild(document.createTextNode(" " + done.length + " of " + of));
    if (done.length) box.appendChild(el("span", "done: " + done.join(", "), "jobs"));
    if (missing.length) box.appendChild(el("span", "missing: " + missing.join(", "), "jobs"));
    return box;
  }

  // ---- deliveries ----
  var lastList = null, lastDetail = null;
  function loadDeliveries() {
    var q = [], st = $("f-state").value, tr = $("f-trigger").value;
    if (st) q.push("state=" + encodeURIComponent(st));
    if (tr) q.push("trigger=" + encodeURIComponent(tr));
    q.push("limit=100");
    var query = q.join("&");
    return api("GET", "/v1/deliveries?" + query).then(function (j) {
      var list = (j && j.deliveries) || [];
      var tb = $("delivery-table").tBodies[0];
      // Unchanged answers leave the table alone, so keyboard focus stays;
      // a changed one keeps the focus on the same delivery's link.
      var snapshot = query + "\n" + JSON.stringify(list);
      if (snapshot === lastList) return;
      lastList = snapshot;
      var focused = document.activeElement && tb.contains(document.activeElement)
        ? document.activeElement.getAttribute("data-id") : null;
      clear(tb);
      list.forEach(function (d) {
        var row = document.createElement("tr");
        row.setAttribute("data-id", String(d.id));
        row.setAttribute("data-state", String(d.state));
        td(row, time(d.created_at), "created");
        td(row, d.trigger, "trigger");
        td(row, badge(d.state), "state");
        td(row, d.attempts, "attempts");
        td(row, d.last_status, "last status");
        td(row, d.run ? badge(d.run.status) : "—", "dbt run");
        var a = el("a", d.id);
        a.href = "#/deliveries/" + encodeURIComponent(d.id);
        a.className = "open";
        a.setAttribute("data-id", String(d.id));
        a.setAttribute("aria-label", "open delivery " + d.id + " (" + d.trigger + ", " + d.state + ")");
        td(row, a, "delivery");
        tb.appendChild(row);
        if (focused !== null && focused === String(d.id)) a.focus();
      });
      $("empty").hidden = list.length > 0;
    });
  }

  // ---- one delivery ----
  function loadDetail() {
    if (!openId) return Promise.resolve();
    var id = openId;
    return api("GET", "/v1/deliveries/" + encodeURIComponent(id)).then(function (d) {
      if (id !== openId) return;
      var snapshot = JSON.stringify(d);
      if (snapshot === lastDetail) return;
      lastDetail = snapshot;
      renderDetail(d);
    }, function (e) {
      if (e.status === 404) { $("d-error").textContent = "No such delivery."; return; }
      throw e;
    });
  }
  function renderDetail(d) {
    $("d-id").textContent = d.id;
    $("detail").setAttribute("data-state", String(d.state));
    var f = $("d-fields");
    clear(f);
    field(f, "trigger", d.trigger);
    field(f, "state", badge(d.state)).id = "d-state";
    field(f, "attempts", d.attempts);
    field(f, "last status", d.last_status);
    field(f, "created", time(d.created_at));
    field(f, "next attempt", time(d.next_attempt_at));
    field(f, "event", d.event);
    $("d-error").textContent = d.last_error === null || d.last_error === undefined ? "—" : d.last_error;

    var retry = $("retry");
    retry.hidden = !(d.state === "failed" || d.state === "cancelled");
    retry.disabled = false;

    var r = $("d-run");
    clear(r);
    if (d.run) {
      field(r, "status", badge(d.run.status)).id = "d-run-status";
      field(r, "run", link(d.run.href, "dbt run " + d.run.id)).id = "d-run-link";
      field(r, "finished", time(d.run.finished_at));
      field(r, "message", d.run.status_message);
    } else field(r, "run", "none (not a dbt trigger, or no run known yet)");

    var c = $("d-chain");
    clear(c);
    if (d.after && typeof d.after === "object") {
      field(c, "after trigger", d.after.trigger);
      var a = el("a", String(d.after.delivery));
      a.href = "#/deliveries/" + encodeURIComponent(d.after.delivery);
      field(c, "after delivery", a).id = "d-after-delivery";
      field(c, "after run", d.after.run_id);
    } else field(c, "after", "not a chained delivery");

    var b = $("d-batch");
    clear(b);
    var evs = Array.isArray(d.events) ? d.events : (d.event ? [d.event] : []);
    evs.forEach(function (e) { b.appendChild(el("li", e)); });
    if (Array.isArray(d.events))
      b.appendChild(el("li", evs.length + " event(s) in this batch", "muted"));

    var ev = $("d-event");
    clear(ev);
    if (d.event_body && typeof d.event_body === "object") {
      Object.keys(d.event_body).forEach(function (k) {
        var v = d.event_body[k];
        field(ev, k, typeof v === "string" ? v : JSON.stringify(v)).setAttribute("data-key", k);
      });
    } else field(ev, "event", "not available");

    var tb = $("d-history").tBodies[0];
    clear(tb);
    (d.history || []).forEach(function (h, i) {
      var tr = document.createElement("tr");
      td(tr, i + 1);
      td(tr, time(h.at));
      td(tr, h.status);
      td(tr, h.ms);
      td(tr, h.error);
      tb.appendChild(tr);
    });
  }
  function doRetry() {
    if (!openId) return;
    var btn = $("retry"), id = openId;
    btn.disabled = true;
    $("retry-msg").textContent = "Retrying…";
    api("POST", "/v1/deliveries/" + encodeURIComponent(id) + "/retry").then(function () {
      $("retry-msg").textContent = "Queued again: pending.";
      return refresh();
    }, function (e) {
      $("retry-msg").textContent = "Retry refused: " + e.message;
      btn.disabled = false;
    });
  }

  // ---- routing and refresh ----
  function route() {
    var m = /^#\/deliveries\/(.+)$/.exec(location.hash);
    var was = openId;
    openId = m ? decodeURIComponent(m[1]) : null;
    $("detail").hidden = !openId;
    if (openId && openId !== was) {
      lastDetail = null;
      $("retry-msg").textContent = "";
      $("d-id").textContent = openId;
      loadDetail().then(function () { $("detail").focus(); }, showError);
    }
  }
  function showError(e) { if (e && e.message !== "401") status("Cannot reach the admin API: " + e.message); }
  function refresh() {
    return Promise.all([loadMetrics(), loadTriggers(), loadDeliveries(), loadDetail()])
      .then(function () { status(""); }, showError);
  }
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      if (!token) return;
      (($("f-auto").checked && !document.hidden) ? refresh() : Promise.resolve()).then(schedule, schedule);
    }, REFRESH_MS);
  }
  function signIn() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    route();
    refresh().then(schedule, schedule);
  }
  function signOut(msg) {
    token = null;
    lastList = null;
    lastDetail = null;
    sessionStorage.removeItem(KEY);
    clearTimeout(timer);
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = msg || "";
    $("token").focus();
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("login-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var t = $("token").value.trim();
      if (!t) { $("login-error").textContent = "Enter an admin token."; return; }
      $("login-error").textContent = "";
      $("login-button").disabled = true;
      token = t;
      api("GET", "/v1/triggers").then(function () {
        sessionStorage.setItem(KEY, t);
        $("token").value = "";
        signIn();
      }, function (e) {
        if (e.message !== "401") $("login-error").textContent = "Cannot reach the admin API: " + e.message;
      }).then(function () { $("login-button").disabled = false; });
    });
    $("logout").addEventListener("click", function () { signOut(""); });
    $("retry").addEventListener("click", doRetry);
    $("refresh").addEventListener("click", function () { refresh(); });
    $("f-state").addEventListener("change", function () { loadDeliveries().catch(showError); });
    $("f-trigger").addEventListener("change", function () { loadDeliveries().catch(showError); });
    $("d-close").addEventListener("click", function (ev) {
      ev.preventDefault();
      history.pushState(null, "", location.pathname);
      route();
      $("deliveries").focus();
    });
    window.addEventListener("hashchange", route);
    if (token) signIn(); else $("token").focus();
  });
})();
