// The sale list: GET /api/goods, one card per sale with its state.
"use strict";

function saleState(g, now) {
  if (now < g.startAt) return I18n.t("list.starts", { time: I18n.date(g.startAt) });
  if (now < g.endAt) return I18n.t(g.stock > 0 ? "list.onSale" : "list.soldOut");
  return I18n.t("list.ended");
}

(async () => {
  await I18n.ready;
  account();
  const list = document.getElementById("list");
  try {
    const goods = await Flash.call("GET", "/api/goods");
    list.textContent = "";
    if (goods.length === 0) Flash.show(list, I18n.t("list.empty"), "info");
    const now = Date.now();
    for (const g of goods) {
      const a = document.createElement("a");
      a.className = "card goods";
      a.href = `/goods.html?id=${g.id}`;
      a.innerHTML = `<img alt=""><div><div class="name"></div><div><span class="price"></span><span class="was"></span></div><div class="status"></div></div>`;
      a.querySelector("img").src = g.img;
      a.querySelector(".name").textContent = g.title;
      a.querySelector(".price").textContent = Flash.money(g.seckillPrice);
      a.querySelector(".was").textContent = Flash.money(g.price);
      a.querySelector(".status").textContent = saleState(g, now);
      list.appendChild(a);
    }
  } catch (e) {
    Flash.show(list, e.message, "error");
  }
})();

// A visitor who has not logged in is offered "Log in", a shopper who has "Log out".
function account() {
  const link = document.getElementById("logout");
  if (Flash.loggedIn()) {
    link.addEventListener("click", async (ev) => {
      ev.preventDefault();
      try { await Flash.call("POST", "/api/logout"); } catch (e) { /* logged out either way */ }
      Flash.loggedIn(false);
      location.href = "/login.html";
    });
  } else {
    link.id = "login";
    link.dataset.i18n = "nav.login";
    link.textContent = I18n.t("nav.login");
    link.href = "/login.html";
  }
}
