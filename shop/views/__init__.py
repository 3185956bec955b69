"""Buyer pages, a module per topic (shop/shop_urls.py routes to them): catalogue, checkout
(the product page), order, lookup (and "all my orders"), stock_alerts; headers they share."""
