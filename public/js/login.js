// The login page: hashes the password with the client salt, then POST /api/login.
"use strict";

document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const msg = document.getElementById("msg");
  const button = document.getElementById("submit");
  const mobile = document.getElementById("mobile").value.trim();
  const plain = document.getElementById("password").value;
  if (!/^1\d{10}$/.test(mobile)) {
    Flash.show(msg, Flash.MESSAGES[500213], "error");
    return;
  }
  button.disabled = true;
  try {
    await Flash.call("POST", "/api/login", { mobile, password: Flash.passwordHash(plain) });
    Flash.loggedIn(true);
    location.href = Flash.sameOrigin(Flash.param("next"));
  } catch (e) {
    if (e.status === 429 && e.data && e.data.retryAfterMs) {
      // failed logins are limited per number and per address: say so plainly, with the wait
      const minutes = Math.max(1, Math.ceil(e.data.retryAfterMs / 60000));
      const wait = I18n.t("login.minutes", { n: minutes });
      Flash.show(msg, I18n.t("login.paused", { wait }), "error");
    } else {
      Flash.show(msg, e.message, "error");
    }
    button.disabled = false;
  }
});
