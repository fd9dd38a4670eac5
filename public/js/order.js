// The order page: the shopper's own order, and a (simulated) pay button while it is unpaid.
"use strict";

const orderId = Flash.param("id");
const $ = (id) => document.getElementById(id);

function render(o) {
  $("id").textContent = o.id;
  $("name").textContent = o.goodsName;
  $("price").textContent = Flash.money(o.goodsPrice);
  $("created").textContent = I18n.date(o.createdAt);
  const status = `order.status.${o.status}`;
  $("status").textContent = I18n.has(status) ? I18n.t(status) : I18n.t("order.status.other", { n: o.status });
  $("pay").classList.toggle("hidden", o.status !== 0);
}

async function load() {
  await I18n.ready;
  try {
    render(await Flash.call("GET", `/api/orders/${encodeURIComponent(orderId)}`));
  } catch (e) {
    if (e.code === 500210) { Flash.goLogin(); return; }
    Flash.show($("msg"), e.message, "error");
  }
}

$("pay").addEventListener("click", async () => {
  $("pay").disabled = true;
  try {
    render(await Flash.call("POST", `/api/orders/${encodeURIComponent(orderId)}/pay`));
    Flash.show($("msg"), I18n.t("order.paid"), "ok");
  } catch (e) {
    // a shop in front (FLASHGATE_AUTH=jwt): the shop's checkout takes the money, not this page
    if (e.code === 500261) $("pay").classList.add("hidden");
    Flash.show($("msg"), e.message, "error");
  } finally {
    $("pay").disabled = false;
  }
});

load();
