// The shoppers' pages in the shopper's language. Every word a page shows comes from one message
// catalogue per language, public/i18n/LANG.json (flat keys; a value is a string with {name}
// placeholders, or plural forms {"one": …, "other": …} chosen by Intl.PluralRules on {n}).
// Another language is another file, named in LANGS.
//
// Which language: the shopper's choice (the switch in the header, kept in localStorage), else the
// first of the browser's languages (navigator.languages, which follows Accept-Language) that we
// have, else English. <html lang> follows. Static text in the HTML is marked data-i18n="key"
// (textContent) or data-i18n-attr="attr:key,attr:key"; scripts call I18n.t(key, params) after
// I18n.ready. English is always loaded too and fills any key the chosen catalogue lacks, so a
// broken catalogue shows English, never a blank (the tests fail on such a catalogue instead).
// Numbers, prices and dates go through Intl in the chosen language.
"use strict";

const I18n = (() => {
  const LANGS = ["en", "zh-CN"];
  const KEY = "flashgate.lang";

  function choose() {
    try {
      const saved = localStorage.getItem(KEY);
      if (LANGS.includes(saved)) return saved;
    } catch (e) { /* storage off: the browser's languages decide */ }
    const wanted = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ""])
      .map((l) => String(l).toLowerCase());
    for (const l of wanted) {
      const exact = LANGS.find((x) => x.toLowerCase() === l);
      const base = LANGS.find((x) => x.split("-")[0].toLowerCase() === l.split("-")[0]);
      if (exact || base) return exact || base;
    }
    return "en";
  }

  const lang = choose();
  let messages = {};
  let fallback = {};

  const load = (l) => fetch(`/i18n/${l}.json`).then((r) => (r.ok ? r.json() : {})).catch(() => ({}));

  // The chosen catalogue's message, else English's, else undefined.
  const lookup = (key) => (messages[key] !== undefined ? messages[key] : fallback[key]);

  function t(key, params = {}) {
    let m = lookup(key);
    if (m === undefined) return key;
    if (typeof m === "object") {
      const n = Number(params.n || 0);
      m = m[new Intl.PluralRules(lang).select(n)] || m.other;
    }
    return String(m).replace(/\{(\w+)\}/g, (whole, k) => (params[k] === undefined ? whole : format(params[k])));
  }

  function format(v) {
    return typeof v === "number" ? new Intl.NumberFormat(lang).format(v) : String(v);
  }

  function money(n, currency = "CNY") {
    return new Intl.NumberFormat(lang, { style: "currency", currency, currencyDisplay: "narrowSymbol" }).format(Number(n));
  }

  function date(ms) {
    return new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" }).format(new Date(ms));
  }

  // Fills every marked element under `root`.
  function translate(root) {
    root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    root.querySelectorAll("[data-i18n-attr]").forEach((el) => {
      for (const pair of el.dataset.i18nAttr.split(",")) {
        const [attr, key] = pair.split(":");
        el.setAttribute(attr.trim(), t(key.trim()));
      }
    });
  }

  // The switch: a button in the header naming the other language; the choice is kept.
  function addSwitch() {
    const header = document.querySelector("header");
    if (!header || document.getElementById("lang")) return;
    const b = document.createElement("button");
    b.id = "lang";
    b.type = "button";
    b.className = "lang";
    b.textContent = t("lang.switch");
    b.setAttribute("aria-label", t("lang.switchLabel"));
    b.lang = lang === "en" ? "zh-CN" : "en";
    b.addEventListener("click", () => {
      const next = LANGS[(LANGS.indexOf(lang) + 1) % LANGS.length];
      try { localStorage.setItem(KEY, next); } catch (e) { /* not remembered */ }
      location.reload();
    });
    // after the brand, before the account link (which stays the header's last link)
    header.insertBefore(b, header.children[1] || null);
  }

  const ready = Promise.all([load(lang), lang === "en" ? null : load("en")]).then(([chosen, en]) => {
    messages = chosen;
    fallback = en || chosen;
    document.documentElement.lang = lang;
    translate(document);
    addSwitch();
  });

  const has = (key) => lookup(key) !== undefined;

  return { LANGS, lang, ready, t, has, money, date, translate };
})();
