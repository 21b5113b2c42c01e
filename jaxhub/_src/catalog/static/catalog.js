// The catalog's index page: lists the modules of window.JAXHUB_INDEX (loaded from
// index-data.js, so the page also works from file://) and filters them as you type.
// Matching follows jaxhub.catalog.search: every word of the query must occur in the
// module's search_text; modules with more words in their names come first.
(function () {
  "use strict";
  const index = window.JAXHUB_INDEX || {modules: []};
  const PARAM_BUCKETS = [
    ["lt100k", "< 100K parameters", 0, 1e5],
    ["100k-1m", "100K \u2013 1M parameters", 1e5, 1e6],
    ["1m-10m", "1M \u2013 10M parameters", 1e6, 1e7],
    ["10m-100m", "10M \u2013 100M parameters", 1e7, 1e8],
    ["ge100m", "\u2265 100M parameters", 1e8, Infinity],
  ];
  const $ = (id) => document.getElementById(id);
  const latest = (m) => m.versions[String(m.latest)];
  const filters = {
    task: (r) => [r.task],
    signature: (r) => r.signatures,
    input: (r) => [r.input_size],
    license: (r) => [r.license],
  };

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    (children || []).forEach((c) => node.append(c));
    return node;
  }

  function humanCount(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(1) + "B";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e3) return (n / 1e3).toFixed(1) + "K";
    return String(n);
  }

  function fillSelect(select, values) {
    [...new Set(values)].filter((v) => v !== "").sort().forEach((v) => {
      select.append(el("option", {value: v}, [v]));
    });
  }

  function setUpFilters() {
    Object.entries(filters).forEach(([name, values]) => {
      fillSelect($("filter-" + name), index.modules.flatMap((m) => values(latest(m))));
    });
    PARAM_BUCKETS.forEach(([value, label]) => {
      $("filter-params").append(el("option", {value: value}, [label]));
    });
  }

  function matches(module, terms) {
    const record = latest(module);
    if (!terms.every((t) => module.search_text.includes(t))) return false;
    for (const [name, values] of Object.entries(filters)) {
      const wanted = $("filter-" + name).value;
      if (wanted && !values(record).includes(wanted)) return false;
    }
    const bucket = PARAM_BUCKETS.find((b) => b[0] === $("filter-params").value);
    const count = record.params.count;
    return !bucket || (count >= bucket[2] && count < bucket[3]);
  }

  function card(module) {
    const r = latest(module);
    const href = module.name + "/" + module.latest + "/index.html";
    const facts = [["task", r.task], ["input", r.input_size || "\u2013"],
                   ["params", humanCount(r.params.count)], ["license", r.license],
                   ["signatures", r.signatures.join(", ")]];
    return el("li", {"class": "module", "data-name": module.name}, [
      el("a", {"class": "name", href: href}, [module.name]),
      el("span", {"class": "badge"}, ["v" + module.latest]),
      el("p", {}, [r.description || ""]),
      el("dl", {"class": "facts"}, facts.flatMap(([k, v]) => [
        el("dt", {}, [k]), el("dd", {"data-fact": k}, [v])])),
    ]);
  }

  let shownFor = null;  // the controls' state the list was last drawn for

  function render() {
    const state = [...document.querySelectorAll(".controls input, .controls select")]
      .map((c) => c.value).join("\u0000");
    if (state === shownFor) return;  // keep the same nodes, so a click in flight lands
    shownFor = state;
    const terms = $("search").value.toLowerCase().split(/\s+/).filter(Boolean);
    const inName = (m) => terms.filter((t) => m.name.toLowerCase().includes(t)).length;
    const shown = index.modules.filter((m) => matches(m, terms))
      .sort((a, b) => inName(b) - inName(a) || (a.name < b.name ? -1 : 1));
    $("results").replaceChildren(...shown.map(card));
    $("count").textContent = shown.length + " of " + index.modules.length + " modules";
    if (!shown.length) {
      $("results").append(el("li", {"class": "empty"}, ["No module matches."]));
    }
  }

  setUpFilters();
  $("search").addEventListener("input", render);
  document.querySelectorAll(".controls select").forEach((select) => {
    // "change" too: some browsers fire only that when a select is picked.
    select.addEventListener("input", render);
    select.addEventListener("change", render);
  });
  render();
})();
