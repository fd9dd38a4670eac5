// The sale list: GET /api/goods, one card per sale with its state.
"use strict";

function saleState(g, now) {
  if (now < g.startAt) return "starts " + new Date(g.startAt).toLocaleString();
  if (now < g.endAt) return g.stock > 0 ? "on sale now" : "sold out";
  return "ended";
}

(async () => {
  const list = document.getElementById("list");
  try {
    const goods = await Flash.call("GET", "/api/goods");
    list.textContent = "";
    if (goods.length === 0) list.innerHTML = '<p class="msg info">No sales right now.</p>';
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
const account = document.getElementById("logout");
if (Flash.loggedIn()) {
  account.addEventListener("click", async (ev) => {
    ev.preventDefault();
    try { await Flash.call("POST", "/api/logout"); } catch (e) { /* logged out either way */ }
    Flash.loggedIn(false);
    location.href = "/login.html";
  });
} else {
  account.id = "login";
  account.textContent = "Log in";
  account.href = "/login.html";
}
