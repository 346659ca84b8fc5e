/* django-taskengine admin console: live refresh of the pages that show the engine's state.
 *
 * Every few seconds (5 by default; `data-te-live-interval="<seconds>"` on any element changes
 * it) the page fetches its own URL again, query string included, and swaps in the fresh parts:
 *
 * - every element with `data-te-live="<name>"` is replaced by the element of the same name in
 *   the fresh page; a region holding the focus, or a form field with unsaved input, is left
 *   alone (and while any form field outside them has unsaved input, nothing is refreshed);
 * - on the app's change lists (body classes `app-django_taskengine` and `change-list`) the
 *   rows of the results table and the paginator are refreshed too (not the filters: their
 *   folded or unfolded state is the operator's). The
 *   action checkboxes of rows still listed are kept (checked ones stay checked), so Django's
 *   "N of M selected" counter and "select all" stay right; nothing is refreshed while the
 *   "select all N" choice across pages is on.
 *
 * The scroll position is kept. A "Live ● / Paused" button in the breadcrumbs bar stops and
 * starts it (remembered in localStorage). Nothing is fetched while the tab is hidden; after a
 * failed request the interval doubles (up to a minute) and "refresh failed, retrying" shows.
 * No build step and no library: fetch and DOMParser.
 */
(function () {
  "use strict";

  var STORAGE_KEY = "django_taskengine.live";
  var DEFAULT_SECONDS = 5;
  var MAX_DELAY = 60000;

  // Django's actions.js keeps the action checkboxes it found at load in a static list. Rows
  // come and go here, so it is handed a list that looks them up at each use. Django calls the
  // global `Actions` when the page has loaded, after this script has run.
  function currentCheckboxes() {
    return Array.prototype.slice.call(document.querySelectorAll("tr input.action-select"));
  }
  var liveCheckboxes = {
    get length() { return currentCheckboxes().length; },
    forEach: function (fn) { currentCheckboxes().forEach(fn); },
    filter: function (fn) { return currentCheckboxes().filter(fn); }
  };
  if (typeof Symbol !== "undefined") {
    liveCheckboxes[Symbol.iterator] = function () { return currentCheckboxes()[Symbol.iterator](); };
  }
  if (typeof window.Actions === "function" && !window.Actions.teLive) {
    var djangoActions = window.Actions;
    window.Actions = function (checkboxes, options) {
      return djangoActions(liveCheckboxes, options);
    };
    window.Actions.teLive = true;
  }

  function isChangeList() {
    var classes = document.body.classList;
    return classes.contains("app-django_taskengine") && classes.contains("change-list");
  }

  function hasRegions() {
    return document.querySelector("[data-te-live]") !== null ||
      (isChangeList() && document.getElementById("result_list") !== null);
  }

  // A field whose value differs from the one the page was served with: unsaved input.
  function isDirty(field) {
    // Not input to keep: the action checkboxes (kept across refreshes), and fields of no form,
    // such as the navigation's filter, whose value Django restores from localStorage.
    if (!field.form || field.matches("input.action-select, #action-toggle, input.select-across")) {
      return false;
    }
    if (field.type === "checkbox" || field.type === "radio") {
      return field.checked !== field.defaultChecked;
    }
    if (field.tagName === "SELECT") {
      var options = Array.prototype.slice.call(field.options);
      // With no option marked selected, the page was served showing the first one.
      var marked = options.some(function (option) { return option.defaultSelected; });
      return options.some(function (option, index) {
        var served = marked ? option.defaultSelected : index === 0 && !field.multiple;
        return option.selected !== served;
      });
    }
    if (field.type === "hidden" || field.type === "submit" || field.type === "button") {
      return false;
    }
    return "defaultValue" in field && field.value !== field.defaultValue;
  }

  function dirtyIn(root) {
    return Array.prototype.some.call(root.querySelectorAll("input, select, textarea"), isDirty);
  }

  function holdsFocus(root) {
    var active = document.activeElement;
    return active && active !== document.body && root.contains(active);
  }

  function swapRegions(fresh) {
    document.querySelectorAll("[data-te-live]").forEach(function (old) {
      if (!old.isConnected || holdsFocus(old) || dirtyIn(old)) {
        return;
      }
      var name = old.getAttribute("data-te-live");
      var match = Array.prototype.find.call(fresh.querySelectorAll("[data-te-live]"), function (el) {
        return el.getAttribute("data-te-live") === name;
      });
      if (match && match.outerHTML !== old.outerHTML) {
        old.replaceWith(document.adoptNode(match));
      }
    });
  }

  function replaceOne(selector, fresh) {
    var old = document.querySelector(selector);
    var match = fresh.querySelector(selector);
    if (old && match && old.outerHTML !== match.outerHTML && !holdsFocus(old)) {
      old.replaceWith(document.adoptNode(match));
    }
  }

  // The results' rows, keeping the checkbox elements of the rows still listed (Django's
  // actions.js knows them: the last one clicked, for shift-click ranges).
  function swapResults(fresh) {
    var across = document.querySelector("div.actions input.select-across");
    if (across && across.value === "1") {
      return true; // "select all N" is on: the operator is about to act on the whole list
    }
    var table = document.getElementById("result_list");
    var freshTable = fresh.getElementById("result_list");
    if (!table || !freshTable || !table.tBodies[0] || !freshTable.tBodies[0]) {
      // A list that became empty, or stopped being: its layout differs; reload it whole if
      // nothing is selected.
      if (!table !== !freshTable && !currentCheckboxes().some(function (c) { return c.checked; })) {
        window.location.reload();
      }
      return false;
    }
    if (table.tBodies[0].innerHTML === freshTable.tBodies[0].innerHTML) {
      return true;
    }
    var kept = {};
    currentCheckboxes().forEach(function (box) { kept[box.value] = box; });
    var rows = Array.prototype.slice.call(freshTable.tBodies[0].rows);
    rows.forEach(function (row) {
      var box = row.querySelector("input.action-select");
      if (box && kept[box.value]) {
        box.replaceWith(kept[box.value]);
        row.classList.toggle("selected", kept[box.value].checked);
      }
    });
    table.tBodies[0].replaceChildren.apply(table.tBodies[0], rows.map(function (row) {
      return document.adoptNode(row);
    }));
    var counter = document.querySelector("span.action-counter");
    var freshCounter = fresh.querySelector("span.action-counter");
    if (counter && freshCounter) {
      counter.dataset.actionsIcnt = freshCounter.dataset.actionsIcnt;
    }
    // Django's own handler brings the counter and "select all" up to date.
    var boxes = currentCheckboxes();
    var anchor = boxes.find(function (c) { return c.checked; }) || boxes[0];
    if (anchor) {
      anchor.dispatchEvent(new Event("change", { bubbles: true }));
    }
    return true;
  }

  var state = {
    live: window.localStorage.getItem(STORAGE_KEY) !== "paused",
    timer: null,
    delay: DEFAULT_SECONDS * 1000,
    failures: 0,
    inFlight: null,
    leaving: false
  };

  function interval() {
    var holder = document.querySelector("[data-te-live-interval]");
    var seconds = holder ? parseFloat(holder.getAttribute("data-te-live-interval")) : NaN;
    return (seconds > 0 ? seconds : DEFAULT_SECONDS) * 1000;
  }

  function schedule() {
    window.clearTimeout(state.timer);
    state.timer = null;
    if (state.live && !state.leaving && !document.hidden) {
      state.timer = window.setTimeout(refresh, state.delay);
    }
  }

  function showProblem(text) {
    var note = document.getElementById("te-live-status");
    if (note) {
      note.textContent = text;
    }
  }

  function refresh() {
    state.timer = null;
    if (!state.live || state.leaving || document.hidden) {
      return;
    }
    // Unsaved input anywhere: wait, or it would be lost (or its region would be).
    if (dirtyIn(document)) {
      schedule();
      return;
    }
    var controller = typeof AbortController !== "undefined" ? new AbortController() : null;
    state.inFlight = controller;
    fetch(window.location.href, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-Requested-With": "django-taskengine-live" },
      signal: controller ? controller.signal : undefined
    }).then(function (response) {
      if (!response.ok || response.redirected) {
        throw new Error("HTTP " + response.status);
      }
      return response.text();
    }).then(function (html) {
      if (!state.live || state.leaving) {
        return;
      }
      var fresh = new DOMParser().parseFromString(html, "text/html");
      var x = window.scrollX;
      var y = window.scrollY;
      swapRegions(fresh);
      if (isChangeList() && swapResults(fresh)) {
        replaceOne("#changelist p.paginator", fresh);
      }
      window.scrollTo(x, y);
      state.failures = 0;
      state.delay = interval();
      showProblem("");
      document.dispatchEvent(new CustomEvent("te-live:refreshed"));
    }).catch(function (error) {
      if (state.leaving || (error && error.name === "AbortError")) {
        return;
      }
      state.failures += 1;
      state.delay = Math.min(interval() * Math.pow(2, state.failures), MAX_DELAY);
      showProblem("refresh failed, retrying");
    }).then(function () {
      state.inFlight = null;
      schedule();
    });
  }

  function render(button) {
    button.textContent = state.live ? "Live \u25CF" : "Paused";
    button.setAttribute("aria-pressed", state.live ? "true" : "false");
    button.title = state.live
      ? "This page refreshes itself every " + interval() / 1000 + " s. Click to pause."
      : "Refreshing is paused. Click to refresh this page by itself again.";
    button.classList.toggle("te-live-on", state.live);
  }

  function addControl() {
    var box = document.createElement("span");
    box.className = "te-live";
    var button = document.createElement("button");
    button.type = "button";
    button.id = "te-live-toggle";
    button.className = "te-live-toggle";
    var note = document.createElement("span");
    note.id = "te-live-status";
    note.className = "te-live-status";
    note.setAttribute("aria-live", "polite");
    box.appendChild(button);
    box.appendChild(note);
    render(button);
    button.addEventListener("click", function () {
      state.live = !state.live;
      window.localStorage.setItem(STORAGE_KEY, state.live ? "live" : "paused");
      render(button);
      state.delay = interval();
      if (state.live) {
        refresh();
      } else {
        window.clearTimeout(state.timer);
        if (state.inFlight) {
          state.inFlight.abort();
        }
        showProblem("");
      }
    });
    // Django 6 lists the breadcrumbs in an <ol>, whose children must be <li>s.
    var bar = document.querySelector("div.breadcrumbs, ol.breadcrumbs");
    if (bar && bar.tagName === "OL") {
      var item = document.createElement("li");
      item.className = "te-live-item";
      item.appendChild(box);
      bar.appendChild(item);
    } else if (bar) {
      bar.appendChild(box);
    } else {
      var content = document.getElementById("content");
      if (content) {
        content.insertBefore(box, content.firstChild);
      }
    }
  }

  function stopForGood() {
    // A form is being sent, or the page is left: a fetch now could take the messages meant
    // for the next page.
    state.leaving = true;
    window.clearTimeout(state.timer);
    if (state.inFlight) {
      state.inFlight.abort();
    }
  }

  function start() {
    if (!hasRegions()) {
      return;
    }
    addControl();
    state.delay = interval();
    document.addEventListener("submit", stopForGood, true);
    window.addEventListener("pagehide", stopForGood);
    window.addEventListener("pageshow", function (event) {
      if (event.persisted) {
        state.leaving = false;
        schedule();
      }
    });
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) {
        window.clearTimeout(state.timer);
      } else if (state.live) {
        refresh();
      }
    });
    schedule();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
