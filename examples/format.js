// Formatting helpers for the items table.

export function formatPrice(cents, currency = "EUR") {
  const value = cents / 100;
  return new Intl.NumberFormat("en", { style: "currency", currency }).format(value);
}

export function pageLabel(page, pages) {
  if (pages == 0) return "no results";
  return `page ${page} of ${pages}`;
}
