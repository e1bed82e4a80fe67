// Outbound Portal: progressive enhancement only; every page works without this file.
// Progress polling, the mailbox step's live preview, the unsaved-choices warning, copy buttons.
(function () {
  "use strict";

  // Ask before destructive admin actions (forms carrying data-confirm).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return "—"; }
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) { return seconds + " s"; }
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) { return minutes + " min"; }
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 48) { return minutes ? hours + " h " + minutes + " min" : hours + " h"; }
    var days = Math.floor(hours / 24);
    hours = hours % 24;
    return hours ? days + " d " + hours + " h" : days + " d";
  }

  var BADGES = {
    pending_payment: ["gray", "Awaiting payment"], provisioning: ["blue", "Setting up"],
    active: ["green", "Active"], failed: ["red", "Failed"], cancelled: ["gray", "Cancelled"],
    upgrading: ["blue", "Upgrading"], past_due: ["amber", "Past due"],
    completed: ["green", "Done"]
  };

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) { el.textContent = text; }
  }

  function renderSteps(list, steps) {
    steps.forEach(function (s) {
      var li = list.querySelector('[data-key="' + s.key + '"]');
      if (!li) { return; }
      li.className = "tl-step tl-" + s.status;
      li.querySelector(".tl-state").textContent = s.status_words;
      var meta = "";
      if (s.elapsed_s !== null) {
        meta = (s.status === "completed" ? "took " : "for ") + duration(s.elapsed_s);
        if (s.status !== "completed") { meta += " · usually about " + duration(s.typical_s); }
      } else if (s.status === "pending") {
        meta = "usually about " + duration(s.typical_s);
      }
      if (s.slow) { meta += " · taking longer than usual"; }
      li.querySelector(".tl-meta").textContent = meta;
      var body = li.querySelector(".tl-body");
      [["tl-note", s.waiting], ["tl-error", s.message]].forEach(function (pair) {
        var node = body.querySelector("." + pair[0]);
        if (pair[1]) {
          if (!node) { node = document.createElement("div"); node.className = pair[0] + " small"; body.appendChild(node); }
          node.textContent = pair[1];
        } else if (node) {
          node.remove();
        }
      });
    });
  }

  // A 304 means nothing but the clock moved since `data`: advance what the server would have
  // advanced (mirrors portal/progress.py): running steps' elapsed time and "slow" flags, the
  // time so far, and the time left (zero stays zero: the provision is finished or stopped).
  function advance(data, seconds) {
    var copy = JSON.parse(JSON.stringify(data));
    if (copy.elapsed_s !== null) { copy.elapsed_s += seconds; }
    [copy.steps, copy.upgrade_steps || []].forEach(function (steps) {
      steps.forEach(function (s) {
        if (!s.counting || s.elapsed_s === null) { return; }
        s.elapsed_s += seconds;
        s.slow = (s.status === "running" || s.status === "waiting") && s.elapsed_s > s.slow_s;
      });
    });
    if (copy.remaining_s || copy.remaining_slow_s) {
      var typical = 0, slow = 0;
      (copy.upgrade_steps || copy.steps).forEach(function (s) {
        if (s.status === "completed") { return; }
        var spent = s.elapsed_s || 0;
        typical += Math.max(s.typical_s - spent, Math.floor(s.typical_s * 0.1));
        slow += Math.max(s.slow_s - spent, Math.floor(s.slow_s * 0.1));
      });
      copy.remaining_s = typical;
      copy.remaining_slow_s = slow;
    }
    return copy;
  }

  function render(section, data, dashboard, stop) {
    // The bar counts steps, as its label says; the time left is estimated apart.
    var steps = data.done + " of " + data.total + " steps done";
    var bar = document.getElementById("progress-bar");
    if (bar) { bar.max = data.total; bar.value = data.done; bar.textContent = steps; }
    setText("progress-done", steps);
    setText("progress-words", data.status_words);
    setText("progress-note", data.note || "");
    setText("progress-elapsed", duration(data.elapsed_s));
    setText("progress-remaining", data.finished ? "Done" : (data.remaining_s ? "about " + duration(data.remaining_s) : "—"));
    setText("progress-remaining-slow", data.remaining_slow_s && !data.finished ? "can take up to " + duration(data.remaining_slow_s) : "");
    var badge = document.querySelector("#progress-badge .badge");
    var look = BADGES[data.status];
    if (badge && look) { badge.className = "badge badge-" + look[0]; badge.textContent = look[1]; }
    var failure = document.getElementById("progress-failure");
    if (failure) {
      failure.classList.toggle("hidden", !(data.failed_message || data.remedy));
      setText("progress-failed-step", data.failed_step || "");
      setText("progress-failed-message", data.failed_message || "");
      setText("progress-remedy", data.remedy || "");
    }
    var list = document.getElementById("progress-steps");
    if (list) { renderSteps(list, data.upgrade_steps || data.steps); }
    var cta = document.getElementById("progress-done-cta");
    if (cta) { cta.classList.toggle("hidden", !data.finished); }
    section.setAttribute("data-status", data.status);
    if (data.finished) {
      stop();
      window.setTimeout(function () { window.location.assign(dashboard); }, 1500);
    }
  }

  function poll(section) {
    var source = section.getAttribute("data-source");
    var dashboard = section.getAttribute("data-dashboard");
    var timer = null;
    // The last document, its ETag and when it arrived: sent back in If-None-Match, the portal
    // answers 304 with no body until a step or the order changes (most polls).
    var last = null;
    // One request at a time: on a slow connection ticks must not pile up (nor go out before
    // the first answer's ETag is known).
    var busy = false;
    function stop() { if (timer) { window.clearInterval(timer); timer = null; } }
    function tick() {
      if (busy) { return; }
      busy = true;
      var headers = { "Accept": "application/json" };
      if (last && last.etag) { headers["If-None-Match"] = last.etag; }
      fetch(source, { headers: headers, credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 304 && last) {
            return advance(last.data, Math.floor((Date.now() - last.at) / 1000));
          }
          if (!response.ok) { return null; }
          return response.json().then(function (data) {
            last = { etag: response.headers.get("ETag"), data: data, at: Date.now() };
            return data;
          });
        })
        .then(function (data) {
          if (data && timer) { render(section, data, dashboard, stop); }
        })
        .catch(function () { /* offline for a moment: the next tick tries again */ })
        .then(function () { busy = false; });
    }
    timer = window.setInterval(tick, 3000);
    tick();
  }

  // The mailbox step's preview follows the fields as the student types. The portal renders it
  // with the step's own rules (core/mailboxes.py), so it never disagrees with what is created.
  function livePreview(form) {
    var source = form.getAttribute("data-preview");
    var table = document.querySelector("#mailbox-preview table.preview-grid");
    if (!source || !table) { return; }
    var body = table.querySelector("tbody");
    var timer = null;
    var asked = 0;
    function url() {
      var params = new URLSearchParams();
      ["first_name", "last_name"].forEach(function (name) { params.set(name, form.elements[name].value); });
      form.querySelectorAll("select[name^='pattern_']").forEach(function (select) { params.set(select.name, select.value); });
      return source + "?" + params.toString();
    }
    function cell(text, className) {
      var td = document.createElement("td");
      if (className) { td.className = className; }
      td.textContent = text;
      return td;
    }
    function show(data) {
      body.textContent = "";
      var count = 0;
      data.rows.forEach(function (row) {
        var tr = document.createElement("tr");
        tr.appendChild(cell(row.domain));
        row.addresses.forEach(function (address) { tr.appendChild(cell(address, "mono")); count += 1; });
        body.appendChild(tr);
      });
      table.classList.toggle("hidden", count === 0);
      setText("preview-reason", data.reason);
      document.getElementById("preview-reason").classList.toggle("hidden", !data.reason);
      setText("preview-summary", count ? count + " mailboxes, sending as " + data.sender + "." : "");
      form.querySelectorAll("option[data-pattern]").forEach(function (option) {
        var example = data.examples[option.value];
        if (example) { option.textContent = example + "@yourdomain.com"; }
      });
    }
    function update() {
      var mine = ++asked;
      fetch(url(), { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
        .then(function (response) { return response.ok ? response.json() : null; })
        // Only the answer to the latest question is shown (answers may cross on the way).
        .then(function (data) { if (data && mine === asked) { show(data); } })
        .catch(function () { /* offline for a moment: "Update preview" still works */ });
    }
    form.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(update, 250);
    });
  }

  // Wizard forms marked data-unsaved: leaving with changed fields that were not sent asks first.
  var unsaved = false;
  document.addEventListener("input", function (event) {
    var form = event.target.form;
    if (form && form.hasAttribute("data-unsaved")) { unsaved = true; }
  });
  document.addEventListener("submit", function (event) {
    if (!event.defaultPrevented) { unsaved = false; }
  });
  window.addEventListener("beforeunload", function (event) {
    if (unsaved) { event.preventDefault(); event.returnValue = ""; }
  });

  // Copy buttons (data-copy names the element whose text is copied), e.g. the PlusVibe password.
  function copied(button) {
    var label = button.textContent;
    button.textContent = "Copied";
    window.setTimeout(function () { button.textContent = label; }, 2000);
  }
  function copyBySelection(source, button) {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    if (document.execCommand("copy")) { copied(button); }
    selection.removeAllRanges();
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    var source = button && document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    var text = source.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { copied(button); }, function () { copyBySelection(source, button); });
    } else {
      copyBySelection(source, button);
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("progress");
    // Finished (a setup is active, a domain replacement completed): nothing left to follow.
    var finished = ["active", "completed"];
    if (section && finished.indexOf(section.getAttribute("data-status")) < 0) { poll(section); }
    var mailboxes = document.getElementById("mailbox-form");
    if (mailboxes) { livePreview(mailboxes); }
    // Copying needs this script: the buttons stay hidden without it.
    document.querySelectorAll("[data-copy]").forEach(function (button) { button.classList.remove("hidden"); });
  });
})();
