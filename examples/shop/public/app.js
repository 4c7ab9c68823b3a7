async function refresh() {
  const res = await fetch("/api/orders");
  const data = await res.json();
  const list = document.getElementById("orders");
  list.innerHTML = "";
  for (const id of data.done) list.insertAdjacentHTML("beforeend", `<li>${id} done</li>`);
  for (const id of data.pending) list.insertAdjacentHTML("beforeend", `<li>${id} pending</li>`);
}
document.getElementById("order").onclick = async () => {
  await fetch("/api/orders", { method: "POST", body: JSON.stringify({ item: "tea" }) });
  refresh();
};
refresh();
setInterval(refresh, 1000);
