// The order page: the shopper's own order, and a (simulated) pay button while it is unpaid.
"use strict";

const STATUS = { 0: "Unpaid", 1: "Paid", 2: "Closed (not paid in time)", 3: "Refunded" };
const orderId = Flash.param("id");
const $ = (id) => document.getElementById(id);

function render(o) {
  $("id").textContent = o.id;
  $("name").textContent = o.goodsName;
  $("price").textContent = Flash.money(o.goodsPrice);
  $("created").textContent = new Date(o.createdAt).toLocaleString();
  $("status").textContent = STATUS[o.status] || `status ${o.status}`;
  $("pay").classList.toggle("hidden", o.status !== 0);
}

async function load() {
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
    Flash.show($("msg"), "Paid. Thank you!", "ok");
  } catch (e) {
    Flash.show($("msg"), e.message, "error");
  } finally {
    $("pay").disabled = false;
  }
});

load();
