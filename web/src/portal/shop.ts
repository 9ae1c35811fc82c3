// The shop and orders: the catalog, the cart (quantities only: every price is the server's),
// checkout up to the payment step (a Stripe PaymentIntent's client secret, or the server
// saying payments are not configured), and the order list and detail.

import { ApiError } from "../lib/api";
import { announce, clear, errorText, formatDateTime, h, shortId } from "../lib/dom";
import { formError } from "./forms";
import type { PageContext } from "./pagecontext";

interface Variant {
  id: string;
  sku: string;
  name: string;
  price_amount: number;
  current_price_amount: number;
  currency: string;
  billing_interval: string | null;
  available: number | null;
}

interface Product {
  id: string;
  slug: string;
  name: string;
  description: string;
  kind: string;
  variants: Variant[];
}

interface CartLine {
  variant_id: string;
  sku: string;
  product_name: string;
  quantity: number;
  unit_price_amount: number;
  currency: string;
}

interface Cart {
  id: string;
  lines: CartLine[];
  subtotal_amount: number;
  currency: string | null;
}

interface OrderLine {
  id: string;
  product_name: string;
  sku: string;
  quantity: number;
  unit_price_amount: number;
  discount_amount: number;
  tax_amount: number;
  total_amount: number;
}

export interface Order {
  id: string;
  status: string;
  currency: string;
  subtotal_amount: number;
  discount_amount: number;
  shipping_amount: number;
  tax_amount: number;
  total_amount: number;
  refunded_amount: number;
  country: string;
  created_at: string;
  paid_at: string | null;
  lines: OrderLine[];
}

interface CheckoutResult {
  order: Order;
  provider: string;
  client_secret: string | null;
  approve_url: string | null;
}

export function money(amount: number, currency: string | null): string {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: currency ?? "EUR" }).format(amount / 100);
  } catch {
    return `${(amount / 100).toFixed(2)} ${currency ?? ""}`;
  }
}

export function shopPage(context: PageContext): HTMLElement {
  const { session } = context;
  const catalog = h("ul", { class: "list products", id: "catalog" });
  const cartBox = h("div", { id: "cart" });
  const checkoutBox = h("div", { id: "checkout" });

  let lastCart: Cart | null = null;
  const renderCart = (cart: Cart): void => {
    lastCart = cart;
    clear(cartBox);
    if (!cart.lines.length) {
      cartBox.append(h("p", {}, "Your cart is empty."));
      checkoutBox.hidden = true;
      return;
    }
    checkoutBox.hidden = false;
    const rows = cart.lines.map((line) => {
      const id = `qty-${line.variant_id}`;
      const qty = h("input", { id, type: "number", min: 0, max: 999, value: line.quantity, inputmode: "numeric", class: "qty" });
      qty.addEventListener("change", () => void setLine(line.variant_id, Number(qty.value)));
      return h(
        "tr",
        {},
        h("th", { scope: "row" }, `${line.product_name} (${line.sku})`),
        h("td", {}, h("label", { for: id, class: "visually-hidden" }, `Quantity of ${line.product_name}`), qty),
        h("td", {}, money(line.unit_price_amount * line.quantity, line.currency)),
        h("td", {}, h("button", { type: "button", onclick: () => void setLine(line.variant_id, 0) }, "Remove", h("span", { class: "visually-hidden" }, ` ${line.product_name}`))),
      );
    });
    cartBox.append(
      h(
        "table",
        { class: "cart-table" },
        h("caption", { class: "visually-hidden" }, "Cart"),
        h("thead", {}, h("tr", {}, ["Item", "Quantity", "Price", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows),
      ),
      h("p", { id: "cart-subtotal" }, h("strong", {}, `Subtotal ${money(cart.subtotal_amount, cart.currency)}`), h("span", { class: "hint" }, " (before tax and discounts)")),
    );
  };

  const loadCart = async (): Promise<void> => renderCart(await session.request<Cart>("GET", "/cart"));
  const setLine = async (variantId: string, quantity: number): Promise<void> => {
    try {
      renderCart(await session.request<Cart>("PUT", "/cart/lines", { body: { variant_id: variantId, quantity } }));
      announce(quantity ? "Cart updated" : "Removed from the cart");
    } catch (e) {
      announce(errorText(e));
    }
  };

  const loadCatalog = async (): Promise<void> => {
    const { items } = await session.request<{ items: Product[] }>("GET", "/products");
    clear(catalog);
    for (const p of items) {
      catalog.append(
        h(
          "li",
          { "data-product": p.slug },
          h("h3", {}, p.name),
          p.description ? h("p", {}, p.description) : null,
          h(
            "ul",
            { class: "variants" },
            p.variants.map((v) =>
              h(
                "li",
                { class: "row" },
                h("span", {}, `${v.name || v.sku} · ${money(v.current_price_amount, v.currency)}${v.billing_interval ? ` per ${v.billing_interval}` : ""}`),
                v.current_price_amount < v.price_amount ? h("s", { class: "hint" }, money(v.price_amount, v.currency)) : null,
                v.available !== null ? h("span", { class: "hint" }, v.available > 0 ? `${v.available} in stock` : "Out of stock") : null,
                h(
                  "button",
                  { type: "button", disabled: v.available === 0, onclick: () => void setLine(v.id, currentQty(v.id) + 1) },
                  "Add to cart",
                  h("span", { class: "visually-hidden" }, ` ${p.name} ${v.name || v.sku}`),
                ),
              ),
            ),
          ),
        ),
      );
    }
    if (!items.length) catalog.append(h("li", {}, "The shop has no products yet."));
  };
  const currentQty = (variantId: string): number => lastCart?.lines.find((l) => l.variant_id === variantId)?.quantity ?? 0;

  // checkout
  const country = h("input", { id: "checkout-country", name: "country", required: true, minlength: 2, maxlength: 2, autocomplete: "country", value: "DE" });
  const vat = h("input", { id: "checkout-vat", name: "vat_id", maxlength: 20 });
  const coupon = h("input", { id: "checkout-coupon", name: "coupon_code", maxlength: 40 });
  const error = formError();
  const payment = h("div", { id: "payment-step", role: "status" });
  checkoutBox.append(
    h(
      "form",
      {
        class: "stack",
        onsubmit: async (event: Event) => {
          event.preventDefault();
          error.textContent = "";
          payment.textContent = "";
          try {
            const body: Record<string, string> = { country: country.value.toUpperCase() };
            if (vat.value) body.vat_id = vat.value;
            if (coupon.value) body.coupon_code = coupon.value;
            const result = await session.request<CheckoutResult>("POST", "/checkout", { body });
            payment.replaceChildren(
              h("h3", {}, "Payment"),
              h("p", {}, `Order ${shortId(result.order.id)} for ${money(result.order.total_amount, result.order.currency)} (tax ${money(result.order.tax_amount, result.order.currency)}) is waiting for payment.`),
              result.approve_url ? h("p", {}, h("a", { href: result.approve_url, "data-external": "true" }, "Pay with PayPal")) : h("p", { class: "hint" }, `Card payment through ${result.provider} is ready for this order.`),
              h("p", {}, h("a", { href: `/orders/${result.order.id}` }, "See the order")),
            );
            await loadCart();
          } catch (e) {
            if (e instanceof ApiError && e.code === "payments_unavailable") {
              payment.replaceChildren(h("h3", {}, "Payment"), h("p", { class: "error" }, `Payment step: ${e.message}. Your cart is kept.`));
            } else {
              error.textContent = errorText(e);
            }
          }
        },
      },
      h("h3", {}, "Checkout"),
      error,
      h("div", {}, h("label", { for: "checkout-country" }, "Country (two letters)"), country),
      h("div", {}, h("label", { for: "checkout-vat" }, "VAT ID (businesses, optional)"), vat),
      h("div", {}, h("label", { for: "checkout-coupon" }, "Coupon code (optional)"), coupon),
      h("button", { type: "submit", class: "primary" }, "Continue to payment"),
    ),
    payment,
  );
  void loadCatalog().catch((e: unknown) => catalog.replaceChildren(h("li", { class: "error" }, errorText(e))));
  void loadCart().catch(() => undefined);

  return h(
    "div",
    { class: "shop" },
    h("h1", {}, "Shop"),
    h("div", { class: "shop-columns" }, h("section", { "aria-labelledby": "catalog-title" }, h("h2", { id: "catalog-title" }, "Catalog"), catalog), h("section", { class: "card", "aria-labelledby": "cart-title" }, h("h2", { id: "cart-title" }, "Your cart"), cartBox, checkoutBox)),
  );
}

function orderRow(order: Order): HTMLElement {
  return h(
    "li",
    { "data-order-id": order.id, "data-status": order.status },
    h("a", { href: `/orders/${order.id}` }, `Order ${shortId(order.id)}`),
    h("div", { class: "hint" }, `${order.status} · ${money(order.total_amount, order.currency)} · ${formatDateTime(order.created_at)}`),
  );
}

export function ordersPage(context: PageContext, orderId: string | null): HTMLElement {
  const { session } = context;
  const box = h("div", {}, h("p", { role: "status" }, "Loading…"));
  if (orderId) {
    void session
      .request<Order>("GET", `/orders/${orderId}`)
      .then((o) => {
        box.replaceChildren(
          h("p", {}, h("a", { href: "/orders" }, "← All orders")),
          h("h1", {}, `Order ${shortId(o.id)}`),
          h("p", {}, h("span", { class: "tag", id: "order-status" }, o.status), ` · placed ${formatDateTime(o.created_at)}`, o.paid_at ? ` · paid ${formatDateTime(o.paid_at)}` : ""),
          h(
            "table",
            { class: "cart-table" },
            h("caption", { class: "visually-hidden" }, "Order lines"),
            h("thead", {}, h("tr", {}, ["Item", "Quantity", "Tax", "Total"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, o.lines.map((l) => h("tr", {}, h("th", { scope: "row" }, `${l.product_name} (${l.sku})`), h("td", {}, String(l.quantity)), h("td", {}, money(l.tax_amount, o.currency)), h("td", {}, money(l.total_amount, o.currency))))),
          ),
          h(
            "dl",
            { class: "facts" },
            h("dt", {}, "Subtotal"), h("dd", {}, money(o.subtotal_amount, o.currency)),
            h("dt", {}, "Discount"), h("dd", {}, money(o.discount_amount, o.currency)),
            h("dt", {}, "Shipping"), h("dd", {}, money(o.shipping_amount, o.currency)),
            h("dt", {}, "Tax"), h("dd", {}, money(o.tax_amount, o.currency)),
            h("dt", {}, "Total"), h("dd", {}, money(o.total_amount, o.currency)),
            o.refunded_amount ? [h("dt", {}, "Refunded"), h("dd", {}, money(o.refunded_amount, o.currency))] : null,
          ),
        );
      })
      .catch((e: unknown) => box.replaceChildren(h("h1", {}, "Order"), h("p", { class: "error", role: "alert" }, errorText(e))));
    return box;
  }
  void session
    .request<{ items: Order[] }>("GET", "/orders")
    .then(({ items }) => {
      const list = h("ul", { class: "list", id: "order-list" }, items.map(orderRow));
      if (!items.length) list.append(h("li", {}, "No orders yet. ", h("a", { href: "/shop" }, "Visit the shop")));
      box.replaceChildren(h("h1", {}, "Orders"), list);
    })
    .catch((e: unknown) => box.replaceChildren(h("h1", {}, "Orders"), h("p", { class: "error", role: "alert" }, errorText(e))));
  return box;
}
