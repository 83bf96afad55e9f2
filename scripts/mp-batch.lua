-- wrk script: the gtag-batch.lua workload as one Measurement Protocol request (a server
-- sending the same three events: page_view, add_to_cart with one item, purchase with two).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "shop-backend/1.0"
wrk.path = "/mp/collect?measurement_id=G-ABC123&api_secret=bench-secret"
wrk.body = [[{"client_id":"1234567890.1700000000","consent":{"ad_user_data":"GRANTED","ad_personalization":"GRANTED"},
"events":[{"name":"page_view","params":{"page_location":"https://shop.example.com/checkout/thanks?utm_source=pinterest","page_referrer":"https://shop.example.com/cart","page_title":"Thank you","page_type":"checkout"}},
{"name":"add_to_cart","params":{"page_location":"https://shop.example.com/checkout/thanks?utm_source=pinterest","currency":"EUR","value":49.99,"items":[{"item_id":"SKU-1","item_name":"Running Shoe","item_brand":"Acme","item_category":"Shoes","item_variant":"42","price":49.99,"quantity":1}]}},
{"name":"purchase","params":{"page_location":"https://shop.example.com/checkout/thanks?utm_source=pinterest","currency":"EUR","transaction_id":"T-100234","value":129.97,"tax":20.75,"shipping":4.99,"items":[{"item_id":"SKU-1","item_name":"Running Shoe","item_brand":"Acme","item_category":"Shoes","price":49.99,"quantity":2},{"item_id":"SKU-2","item_name":"Socks","item_brand":"Acme","item_category":"Accessories","price":29.99,"quantity":1}]}}]}]]
